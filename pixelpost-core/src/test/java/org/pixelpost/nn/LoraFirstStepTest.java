package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.TestData;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The first LoRA step on an SD-layout U-Net, as a fresh process takes it: every adapter gradient
 * finite, the same each time, and equal to the float64 computation. The gradient reaches the
 * adapters through {@code conv_out} (4 output channels), whose input gradient libtorch 2.10's
 * oneDNN path computed from memory it had not written (NaN where fresh memory held NaN, the cause
 * of skipped first steps). The allocator fills fresh memory with junk while this runs, so a kernel
 * that reads what nobody wrote fails here every time instead of now and then.
 */
class LoraFirstStepTest {
    static final List<String> TARGETS = List.of(".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out");

    /** The adapter gradients of one SFT-style first step (B at zero, as attached), in {@code dtype}. */
    static Map<String, Tensor> firstStepGradients(torch.ScalarType dtype) throws Exception {
        Map<String, Tensor> grads = new LinkedHashMap<>();
        try (UNet2DCondition u = UNet2DCondition.load(TestData.shared().resolve("oracle/unet_tiny")); Generator g = Generator.seeded(3)) {
            Lora.attach(u, p -> TARGETS.stream().anyMatch(p::endsWith), 4, 4, 0, g);
            u.to(dtype);
            Tensor z = g.randn(2, 4, 16, 16).to(dtype), eps = g.randn(2, 4, 16, 16).to(dtype), ctx = g.randn(2, 77, 32).to(dtype);
            Tensor t = Tensors.fromFloats(new float[] {50, 700}, 2);
            Tensor loss = u.forward(z, t, org.pixelpost.model.Conditioning.of(ctx, null)).sub(eps).pow(Tensors.s(2)).mean();          // the latent loss
            loss.backward();
            for (var e : u.trainableParameters().entrySet()) {
                assertTrue(e.getValue().grad().defined(), e.getKey() + " has a gradient");
                grads.put(e.getKey(), e.getValue().grad().to(torch.ScalarType.Double).clone());
            }
        }
        return grads;
    }

    static void junkFill(boolean on) {
        try (PointerPointer<?> argv = new PointerPointer<>("lora-test", "--caffe2_cpu_allocator_do_junk_fill=" + on)) {
            torch.ParseCommandLineFlags(new int[] {2}, argv);
        }
    }

    @Test
    void everyFirstStepGivesFiniteGradientsEqualToTheFloat64Ones() throws Exception {
        Engine.start();
        assertTrue(Engine.threads() >= 2 || Runtime.getRuntime().availableProcessors() < 2, "runs on the threads a user's process has");
        try (Scope s = Scope.open()) {
            Map<String, Tensor> reference = firstStepGradients(torch.ScalarType.Double);
            double scale = reference.values().stream().mapToDouble(x -> Tensors.item(x.abs().max())).max().orElseThrow();
            assertTrue(scale > 0, "the step moves the adapters");
            junkFill(true);
            List<String> wrong = new ArrayList<>();
            try {
                for (int run = 0; run < 6; run++) {
                    try (Scope step = Scope.open()) {
                        Map<String, Tensor> got = firstStepGradients(torch.ScalarType.Float);
                        assertEquals(reference.keySet(), got.keySet());
                        for (var e : got.entrySet()) {
                            Tensor d = e.getValue().sub(reference.get(e.getKey())).abs();
                            double err = torch.isfinite(d).all().item_bool() ? Tensors.item(d.max()) / scale : Double.POSITIVE_INFINITY;
                            if (!(err < 1e-4)) wrong.add("run " + run + " " + e.getKey() + " " + err);
                        }
                    }
                }
            } finally {
                junkFill(false);
            }
            assertTrue(wrong.isEmpty(), wrong.size() + " adapter gradients wrong: " + String.join("; ", wrong.subList(0, Math.min(8, wrong.size()))));
        }
    }
}
