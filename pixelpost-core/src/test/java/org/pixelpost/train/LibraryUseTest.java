package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.data.Batches;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Loss;
import org.pixelpost.objective.Objective;
import org.pixelpost.objective.Objectives;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** PixelPost driven as a Java caller would: objects in memory, no files, no JSON. */
class LibraryUseTest {
    /** The caller's own objective: the latent loss weighted by min(SNR, 5) / SNR (Min-SNR-gamma weighting). */
    static final Objective MIN_SNR = (ctx, batch) -> {
        Tensor z = batch.z();
        Tensor t = ctx.gen().randint(ctx.schedule().numTrainTimesteps(), z.size(0));
        Tensor eps = ctx.gen().randnLike(z);
        Tensor zT = ctx.schedule().addNoise(z, eps, t);
        Tensor out = ctx.model().forward(zT, t, batch.cond());
        Tensor perSample = Objectives.latent(out, ctx.schedule().target(ctx.predictionType(), z, eps, t));
        Tensor snr = ctx.schedule().snr(t);
        Tensor w = torch.minimum(snr, Tensors.scalarTensor(5)).div(snr);
        Tensor loss = perSample.mul(w).mean();
        Map<String, Double> terms = new LinkedHashMap<>();
        terms.put("loss", Tensors.item(loss));
        return new Loss(loss, terms);
    };

    @Test
    void buildTrainAndSampleInMemory() throws Exception {
        Engine.seed(0); // the initial weights; everything after draws from explicit generators
        List<String> captions = List.of("red circle", "blue square", "green cross", "yellow dot");
        try (TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16)) {
            // four 8x8 images made in memory, encoded once to model latents
            Tensor images, z, tokens, mask;
            try (Generator g = Generator.seeded(1); var ng = Tensors.noGrad()) {
                images = g.rand(4, 3, 8, 8);
                z = m.encodeImages(images);
                var text = m.textEncoder.encode(captions);
                tokens = text.tokens();
                mask = text.mask();
            }
            Batch all = Batch.of(z, tokens, mask);
            Batches batches = new Batches() {
                @Override public Batch get(long step, int micro) { return all; }
                @Override public long size() { return 4; }
            };
            Trainer.Options o = Trainer.Options.defaults().withSteps(150).withLr(3e-3).withSeed(7);
            List<Double> losses = new java.util.ArrayList<>();
            try (Trainer t = new Trainer(m, batches, MIN_SNR, o)) {
                double before = t.evaluate(List.of(all, all, all, all), 99).get("loss");
                t.listener(new Trainer.Listener() {
                    @Override public void step(Trainer tr, long step, Map<String, Double> terms) { losses.add(terms.get("loss")); }
                });
                t.run();
                double after = t.evaluate(List.of(all, all, all, all), 99).get("loss");
                assertEquals(150, losses.size());
                assertTrue(after < 0.7 * before, "held-fixed loss " + before + " -> " + after);
            }
            // sampling: images in [0, 1], and the same seed gives the same image whatever the batch
            Sampler.Settings s = new Sampler.Settings(10, 3.0, 0);
            try (Scope sc = Scope.open()) {
                Tensor a = m.sampler().sample(captions, new long[] {0, 1, 2, 3}, s, null);
                Tensor b = m.sampler().sample(List.of(captions.get(2)), new long[] {2}, s, null);
                assertArrayEquals(new long[] {4, 3, 8, 8}, Tensors.shape(a));
                assertTrue(Tensors.item(a.min()) >= 0 && Tensors.item(a.max()) <= 1);
                assertTrue(Tensors.item(a.narrow(0, 2, 1).sub(b).abs().max()) < 1e-5, "image 2 depends on its seed, not its batch");
                assertFalse(torch.equal(a.select(0, 0), a.select(0, 1)));
            }
        }
    }
}
