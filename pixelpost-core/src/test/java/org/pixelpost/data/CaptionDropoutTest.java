package org.pixelpost.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.objective.Batch;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class CaptionDropoutTest {
    @TempDir Path dir;

    @Test
    void aTenthOfTheCaptionsBecomeTheEmptyPromptAndTheDrawRepeats() throws Exception {
        Engine.seed(0);
        List<Path> images = TestData.emojiPngs(java.nio.file.Files.createDirectories(dir.resolve("img")));
        try (TextToImageModel m = TextToImageModel.create("tiny", TestData.taef2().toString(), 64, 1.0);
             EncodedSet set = EncodedSet.encode(images, TestData.CAPTIONS, m, dir.resolve("cache"), EncodedSet.OnBadImage.FAIL, null)) {
            // MiniLM gives the empty prompt two tokens ([CLS] [SEP]); every caption here has more
            long emptyTokens;
            try (Scope s = Scope.open()) {
                emptyTokens = (long) Tensors.item(m.textEncoder.encode(List.of("")).mask().sum());
            }
            EncodedBatches batches = new EncodedBatches(set, null, 8, 1, 11, true, 0.1, false);
            long dropped = 0, total = 0;
            for (long step = 1; step <= 250; step++) {
                try (Scope s = Scope.open()) {
                    Batch b = batches.get(step, 0);
                    float[] counts = Tensors.toFloats(b.cond().mask().sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional()));
                    for (float c : counts) {
                        if (c == emptyTokens) dropped++;
                        total++;
                    }
                    if (step % 50 == 0) {
                        Batch again = batches.get(step, 0);
                        assertTrue(torch.equal(b.cond().tokens(), again.cond().tokens()) && torch.equal(b.z(), again.z()), "a step's batch is a function of the step");
                    }
                }
            }
            // 2,000 draws at p = 0.1: 200 expected, standard deviation 13.4; 4.5 sigma either way
            assertTrue(dropped > 140 && dropped < 260, dropped + " of " + total + " captions dropped");
            // without dropout, no caption is ever empty
            EncodedBatches none = new EncodedBatches(set, null, 8, 1, 11, true, 0, false);
            try (Scope s = Scope.open()) {
                for (long step = 1; step <= 20; step++)
                    assertTrue(Tensors.item(none.get(step, 0).cond().mask().sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional()).min()) > emptyTokens);
            }
        }
    }
}
