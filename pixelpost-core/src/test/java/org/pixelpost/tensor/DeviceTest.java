package org.pixelpost.tensor;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.objective.Batch;
import org.pixelpost.pipeline.TextToImageModel;

/**
 * Device handling without a GPU: names are checked, CUDA is refused with the reason where it is
 * missing, and a model moved to libtorch's "meta" device (shapes, no data) takes its batch, noise,
 * timesteps and schedule there: a tensor the library made on the CPU instead of following the model
 * would be refused, as it would be on a GPU. (libtorch's C++ build has no meta kernels for
 * convolutions, so whole forward passes cannot be run this way.)
 */
class DeviceTest {
    @Test
    void deviceNamesAreCheckedAndMissingCudaIsExplained() {
        assertTrue(Engine.device("cpu").is_cpu());
        for (String bad : List.of("gpu", "cuda:", "cuda:x", "CPU", ""))
            assertThrows(IllegalArgumentException.class, () -> Engine.device(bad), bad);
        if (!torch.cuda_is_available()) {
            var e = assertThrows(IllegalArgumentException.class, () -> Engine.device("cuda:0"));
            assertTrue(e.getMessage().contains("CUDA is not available") && e.getMessage().contains("-Pgpu"), e.getMessage());
        }
    }

    @Test
    void whatTheModelCreatesFollowsItsDevice() throws Exception {
        Device meta = new Device("meta");
        Engine.seed(0);
        try (TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            m.to(meta);
            for (Tensor p : m.denoiser.module().parameters().values()) assertTrue(p.device().is_meta());
            var text = m.textEncoder.encode(List.of("red circle", "blue square")); // made on the CPU
            Batch b = Batch.of(torch.zeros(new long[] {2, 4, 4, 4}, new TensorOptions(torch.ScalarType.Float)), text.tokens(), text.mask())
                .on(m.onDevice(torch.zeros(1)));
            assertTrue(b.z().device().is_meta() && b.cond().tokens().device().is_meta());
            Tensor eps, t;
            try (Generator gen = Generator.seeded(1)) {
                eps = gen.randnLike(b.z());
                t = Tensors.follow(gen.randint(1000, 2), b.z());
            }
            assertTrue(eps.device().is_meta(), "noise drawn for a meta batch is moved to it");
            Tensor zT = m.noiseSchedule().addNoise(b.z(), eps, t);
            assertTrue(zT.device().is_meta(), "the schedule's table follows the timesteps");
            Tensor freq = org.pixelpost.nn.blocks.Embeddings.timestep(t, 32, true, 1);
            assertTrue(freq.device().is_meta(), "timestep features follow the timesteps");
            // libtorch has no meta kernels for convolutions, so the forward passes themselves are not run here
        }
    }
}
