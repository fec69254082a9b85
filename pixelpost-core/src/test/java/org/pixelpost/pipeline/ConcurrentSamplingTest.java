package org.pixelpost.pipeline;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Images sampled in groups at once on their own threads are the images of one batch, in order. */
class ConcurrentSamplingTest {
    static float maxAbsDiff(Tensor a, Tensor b) {
        float[] x = Tensors.toFloats(a), y = Tensors.toFloats(b);
        assertEquals(x.length, y.length);
        float d = 0;
        for (int i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
        return d;
    }

    @Test
    void groupsAtOnceGiveTheImagesOfOneBatch() {
        Engine.seed(3);
        try (TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16); Scope s = Scope.open()) {
            List<String> prompts = List.of("red circle", "blue square", "green cross", "yellow dot", "pink cross");
            List<String> negatives = List.of("", "dark", "", "blurry", "");
            long[] seeds = {5, 6, 7, 8, 9};
            Sampler.Settings one = new Sampler.Settings(6, 3.0, 0);
            Tensor batch = m.sampler().sample(prompts, negatives, seeds, one, null);
            Tensor groups = m.sampler().sample(prompts, negatives, seeds, one.withConcurrent(2), null);
            Tensor three = m.sampler().sample(prompts, negatives, seeds, one.withConcurrent(3), null);
            assertArrayEquals(Tensors.shape(batch), Tensors.shape(groups));
            float d2 = maxAbsDiff(batch, groups), d3 = maxAbsDiff(batch, three);
            System.out.printf("5 images in 2 and 3 groups at once against one batch: max |diff| %.2e, %.2e%n", d2, d3);
            assertTrue(d2 < 1e-5 && d3 < 1e-5, "groups at once give the batch's images in order: " + d2 + ", " + d3);
            // one image alone is the same image: the groups really are the images of their seeds
            Tensor third = m.sampler().sample(prompts.subList(2, 3), negatives.subList(2, 3), new long[] {7}, one, null);
            assertTrue(maxAbsDiff(third, groups.narrow(0, 2, 1)) < 1e-5, "image 3 of the groups is image 3 alone");
            // the images differ from one another (the comparison above is not between constants)
            assertTrue(maxAbsDiff(batch.narrow(0, 0, 1), batch.narrow(0, 1, 1)) > 1e-3);

            // with eta > 0 the step noise is the batch's: such calls run in one batch and match it exactly
            Sampler.Settings eta = new Sampler.Settings(6, 3.0, 1.0);
            assertEquals(0f, maxAbsDiff(m.sampler().sample(prompts, negatives, seeds, eta, null),
                m.sampler().sample(prompts, negatives, seeds, eta.withConcurrent(2), null)));
        }
        assertThrows(IllegalArgumentException.class, () -> new Sampler.Settings(6, 3.0, 0, 0, 0));
    }
}
