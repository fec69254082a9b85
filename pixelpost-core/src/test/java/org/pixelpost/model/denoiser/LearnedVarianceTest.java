package org.pixelpost.model.denoiser;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.data.Batches;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.Trainer;

/** The named DiT sizes output twice the latent channels (learned variance); they train and sample. */
class LearnedVarianceTest {
    @Test
    void eachLearnedVarianceLayoutTrainsAndSamplesNarrowed() throws Exception {
        for (String size : List.of("S/2", "B/2", "L/2", "XL/2")) {
            DiT.Config named = DiT.Config.named(size);
            assertTrue(named.learnSigma(), size);
            assertEquals(2 * named.inChannels(), named.outChannels(), size);
            // the same layout (4 latent channels in, 8 out, patch 2, T5-width text) made narrow and shallow
            DiT.Config narrow = named.narrowed(32, 1, 2, 4);
            Engine.seed(1);
            try (TextToImageModel m = new TextToImageModel(new DiT(narrow), InMemory.autoencoder(), "in-memory",
                    new InMemory.HashingTextEncoder(named.captionChannels(), 4), TextToImageModel.defaultScheduler(), 8, 1.0)) {
                DiT dit = (DiT) m.denoiser;
                // the final layer predicts 2 x 4 channels per pixel; the forward keeps the prediction half
                assertEquals(2L * 2 * 8, dit.parameters().get("final_layer.linear.weight").size(0), size);
                Batch batch;
                try (Generator g = Generator.seeded(2); var ng = Tensors.noGrad()) {
                    org.pixelpost.model.Conditioning text = m.textEncoder.encode(List.of("one", "two"));
                    batch = Batch.of(m.encodeImages(g.rand(2, 3, 8, 8)), text.tokens(), text.mask());
                }
                Batches batches = new Batches() {
                    @Override public Batch get(long step, int micro) { return batch; }
                    @Override public long size() { return 2; }
                };
                try (Scope s = Scope.open(); var ng = Tensors.noGrad()) {
                    Tensor out = dit.forward(batch.z(), Tensors.fromFloats(new float[] {10, 900}, 2), batch.cond());
                    assertArrayEquals(new long[] {2, 4, 4, 4}, Tensors.shape(out), size);
                }
                Map<String, Tensor> before = dit.snapshot();
                try (Trainer t = new Trainer(m, batches, new Sft(1, PixelTerm.of(1)),
                        Trainer.Options.defaults().withSteps(3).withLr(1e-2))) {
                    Map<String, Double> last = t.run();
                    assertTrue(Double.isFinite(last.get("loss")), size);
                }
                assertFalse(org.bytedeco.pytorch.global.torch.equal(before.get("final_layer.linear.weight"),
                    dit.parameters().get("final_layer.linear.weight")), size + ": trained");
                try (Scope s = Scope.open()) {
                    Tensor img = m.sampler().sample(List.of("one"), new long[] {0}, new Sampler.Settings(3, 2.0, 0), null);
                    assertArrayEquals(new long[] {1, 3, 8, 8}, Tensors.shape(img), size);
                    assertTrue(Double.isFinite(Tensors.item(img.sum())), size);
                }
            }
        }
    }
}
