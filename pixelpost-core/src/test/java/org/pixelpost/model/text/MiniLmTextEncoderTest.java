package org.pixelpost.model.text;

import static org.junit.jupiter.api.Assertions.*;

import dev.langchain4j.model.embedding.onnx.allminilml6v2q.AllMiniLmL6V2QuantizedEmbeddingModel;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

class MiniLmTextEncoderTest {
    static MiniLmTextEncoder te;

    @BeforeAll
    static void load() {
        Engine.start();
        te = new MiniLmTextEncoder();
    }

    @AfterAll
    static void close() {
        te.close();
    }

    @Test
    void identicalTextGivesIdenticalFeaturesAndDifferentTextDifferent() {
        org.pixelpost.model.Conditioning a = te.encode(List.of("grinning face", "red heart", "grinning face", ""));
        assertArrayEquals(new long[] {4, 4, 384}, Tensors.shape(a.tokens()));
        assertTrue(torch.equal(a.tokens().select(0, 0), a.tokens().select(0, 2)));
        assertFalse(torch.equal(a.tokens().select(0, 0), a.tokens().select(0, 1)));
        // a fresh encoder (no cache) agrees bit for bit: encoding is deterministic
        try (MiniLmTextEncoder other = new MiniLmTextEncoder()) {
            assertTrue(torch.equal(a.tokens(), other.encode(List.of("grinning face", "red heart", "grinning face", "")).tokens()));
        }
        // the empty prompt is [CLS] [SEP]; padding is masked and zero
        float[] mask = Tensors.toFloats(a.mask().select(0, 3));
        assertArrayEquals(new float[] {1, 1, 0, 0}, mask);
        assertEquals(0.0, Tensors.item(a.tokens().select(0, 3).narrow(0, 2, 2).abs().sum()));
        assertArrayEquals(new long[] {101, 102}, te.tokenIds(""));
    }

    @Test
    void meanPooledFeaturesAreTheLibrarysSentenceEmbedding() {
        AllMiniLmL6V2QuantizedEmbeddingModel lib = new AllMiniLmL6V2QuantizedEmbeddingModel();
        for (String s : List.of("grinning face", "dog face with a tongue out", "red heart", "flag: United Kingdom")) {
            float[][] f = te.tokenFeatures(s);
            double[] mean = new double[384];
            for (float[] row : f) for (int i = 0; i < 384; i++) mean[i] += row[i] / f.length;
            double norm = 0;
            for (double v : mean) norm += v * v;
            norm = Math.sqrt(norm);
            float[] ref = lib.embed(s).content().vector();
            for (int i = 0; i < 384; i++) assertEquals(ref[i], mean[i] / norm, 1e-5, s + " [" + i + "]");
        }
    }

    @Test
    void longCaptionsAreTruncated() {
        String longText = "a very long caption ".repeat(40);
        assertEquals(te.maxTokens(), te.tokenIds(longText).length);
        Tensor t = te.encode(List.of(longText)).tokens();
        assertEquals(te.maxTokens(), t.size(1));
    }
}
