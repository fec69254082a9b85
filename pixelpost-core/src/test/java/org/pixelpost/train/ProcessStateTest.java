package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.DeviceType;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.data.Batches;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Library calls leave the process's random generator and autocast state exactly as they found them. */
class ProcessStateTest {
    static Tensor processGeneratorState() {
        Tensor s = torch.getDefaultCPUGenerator().get_state();
        s.retainReference();
        return s;
    }

    @Test
    void samplingAndTrainingTouchNeitherTheProcessGeneratorNorAutocast() throws Exception {
        Engine.seed(3);
        try (TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16)) {
            Batch batch;
            try (Generator g = Generator.seeded(4); var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a", "b"));
                batch = Batch.of(m.encodeImages(g.rand(2, 3, 8, 8)), text.tokens(), text.mask());
            }
            Batches batches = new Batches() {
                @Override public Batch get(long step, int micro) { return batch; }
                @Override public long size() { return 2; }
            };
            Tensor before = processGeneratorState();
            assertFalse(Autocast.enabled());

            // a bf16 training step with the pixel term, and a stochastic (eta 1) sampling call
            Trainer.Options bf16 = new Trainer.Options(2, 1, 1e-3, 0.9, 0.999, 1e-8, 0, 0, false, 1, 0.9, true, 5, 1);
            try (Trainer t = new Trainer(m, batches, new Sft(1, PixelTerm.of(2)), bf16)) {
                assertNotNull(t.trainStep());
            }
            try (Scope s = Scope.open()) {
                m.sampler().sample(List.of("a"), new long[] {5}, new Sampler.Settings(3, 2.0, 1.0), null);
            }
            assertTrue(torch.equal(before, processGeneratorState()), "the process generator was not advanced or reseeded");
            assertFalse(Autocast.enabled(), "autocast is off again after a bf16 step");

            // a caller that has autocast on itself keeps it after a step
            torch.set_autocast_enabled(DeviceType.CPU, true);
            try (Trainer t = new Trainer(m, batches, new Sft(1, PixelTerm.off()), bf16)) {
                assertNotNull(t.trainStep());
            } finally {
                assertTrue(Autocast.enabled());
                torch.set_autocast_enabled(DeviceType.CPU, false);
            }
            // and a region restores every part of the state it changed: enabled, dtype, weight cache
            torch.set_autocast_dtype(DeviceType.CPU, ScalarType.Half);
            boolean cache = torch.is_autocast_cache_enabled();
            try (Autocast a = Autocast.bf16(true)) {
                assertTrue(Autocast.enabled());
                assertEquals(ScalarType.BFloat16, torch.get_autocast_dtype(DeviceType.CPU).intern());
            }
            assertFalse(Autocast.enabled());
            assertEquals(ScalarType.Half, torch.get_autocast_dtype(DeviceType.CPU).intern());
            assertEquals(cache, torch.is_autocast_cache_enabled());
            torch.set_autocast_dtype(DeviceType.CPU, ScalarType.BFloat16);
        }
    }
}
