package org.pixelpost.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.io.Images;
import org.pixelpost.objective.Batch;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Training on draws from the VAE's posterior: a function of (seed, position), distributed as the posterior says. */
class PosteriorSampleTest {
    @TempDir Path dir;

    @Test
    void drawsRepeatPerPositionAndFollowThePosterior() throws Exception {
        List<Path> images = TestData.emojiPngs(java.nio.file.Files.createDirectories(dir.resolve("img"))).subList(0, 4);
        List<String> captions = TestData.CAPTIONS.subList(0, 4);
        try (TextToImageModel m = InMemory.tinyStableDiffusion();
             EncodedSet set = EncodedSet.encode(images, captions, m, dir.resolve("cache"), EncodedSet.OnBadImage.FAIL, null);
             Scope s = Scope.open()) {
            assertNotNull(set.std, "a VAE's encoded set keeps the posterior's std");
            Tensor expected;
            try (var g = Tensors.noGrad()) {
                Tensor x = Images.load(images.get(0), m.imageSize).unsqueeze(0);
                expected = m.encodePosterior(x).std().select(0, 0);
            }
            assertTrue(Tensors.item(set.std.select(0, 0).sub(expected).abs().max()) < 1e-6, "the std of the image's posterior");
            assertTrue(Tensors.item(set.std.min()) > 0);

            // batch size 1, no flips: position p of the run is sample order(p)
            EncodedBatches mean = new EncodedBatches(set, null, 1, 1, 5, false, 0, false);
            EncodedBatches sampled = new EncodedBatches(set, null, 1, 1, 5, false, 0, true);
            Tensor first = sampled.get(1, 0).z();
            assertTrue(torch.equal(first, sampled.get(1, 0).z()), "a step's draw is a function of the seed and the step");
            assertTrue(torch.equal(first, new EncodedBatches(set, null, 1, 1, 5, false, 0, true).get(1, 0).z()), "and of nothing else (a resumed run draws it again)");
            assertTrue(torch.equal(mean.get(1, 0).z(), set.latents.index_select(0, Tensors.fromFloats(new float[] {mean.order(0)}, 1).to(torch.ScalarType.Long))),
                "latent_sample mean trains on the posterior mean");

            // a step split into micro-batches (or processes) draws what the step in one piece draws
            EncodedBatches whole = new EncodedBatches(set, null, 2, 1, 5, true, 0, true), halves = new EncodedBatches(set, null, 1, 2, 5, true, 0, true);
            for (long step = 1; step <= 3; step++)
                assertTrue(torch.equal(whole.get(step, 0).z(), torch.cat(new org.bytedeco.pytorch.TensorVector(halves.get(step, 0).z(), halves.get(step, 1).z()), 0)),
                    "step " + step + " as 2 x 1 = 1 x 2");

            // standardised residuals (z - mean) / std over many steps: mean 0, variance 1
            double sum = 0, sumSq = 0;
            long n = 0;
            for (long step = 1; step <= 40; step++) {
                try (Scope st = Scope.open()) {
                    long row = sampled.order(step - 1);
                    Batch b = sampled.get(step, 0);
                    Tensor r = b.z().select(0, 0).sub(set.latents.select(0, row)).div(set.std.select(0, row));
                    sum += Tensors.item(r.sum());
                    sumSq += Tensors.item(r.square().sum());
                    n += r.numel();
                }
            }
            double mu = sum / n, var = sumSq / n - mu * mu;
            // 40 x 256 = 10,240 standard normals: the mean's standard error is 0.01, the variance's 0.014
            assertEquals(0, mu, 0.05, "residual mean");
            assertEquals(1, var, 0.07, "residual variance");
        }
    }
}
