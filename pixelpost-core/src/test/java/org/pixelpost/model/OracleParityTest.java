package org.pixelpost.model;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.TestData;
import org.pixelpost.io.SafeTensors;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The reference libraries' own small models ({@code ../shared/oracle}), loaded as a user would load
 * them, give the reference outputs for the same inputs, to 1e-4 (max abs).
 */
class OracleParityTest {
    static final double TOL = 1e-4;

    static Path oracle(String name) {
        return TestData.shared().resolve("oracle").resolve(name);
    }

    static double maxAbsDiff(Tensor a, Tensor b) {
        assertArrayEquals(Tensors.shape(b), Tensors.shape(a), "shape");
        return Tensors.item(a.sub(b).abs().max());
    }

    @Test
    void unetMatchesDiffusers() throws Exception {
        Path dir = oracle("unet_tiny");
        try (UNet2DCondition m = UNet2DCondition.load(dir); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            assertEquals(792_964, m.parameterCount());
            assertEquals(792_964, m.config().parameterCount(), "counted from the configuration alone");
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            Tensor y = m.forward(in.get("sample"), in.get("timestep"), in.get("encoder_hidden_states"), null);
            assertTrue(maxAbsDiff(y, out.get("sample")) < TOL, "sample: " + maxAbsDiff(y, out.get("sample")));
            Tensor y500 = m.forward(in.get("sample"), Tensors.fromFloats(new float[] {500}, 1).to(org.bytedeco.pytorch.global.torch.ScalarType.Long),
                in.get("encoder_hidden_states"), null);
            assertTrue(maxAbsDiff(y500, out.get("sample_scalar_t")) < TOL, "scalar t: " + maxAbsDiff(y500, out.get("sample_scalar_t")));
        }
    }

    @Test
    void clipTextModelMatchesTransformers() throws Exception {
        Path dir = oracle("clip_text_tiny");
        try (ClipTextModel m = ClipTextModel.load(dir); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            assertEquals(51_616, m.parameterCount());
            assertEquals(51_616, m.config().parameterCount());
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            ClipTextModel.Output o = m.forward(in.get("input_ids"), null);
            assertTrue(maxAbsDiff(o.last(), out.get("last_hidden_state")) < TOL, "last: " + maxAbsDiff(o.last(), out.get("last_hidden_state")));
            assertTrue(maxAbsDiff(o.pooled(), out.get("pooler_output")) < TOL, "pooled");
            for (int i = 0; i < 3; i++)
                assertTrue(maxAbsDiff(o.hidden().get(i), out.get("hidden_states." + i)) < TOL, "hidden " + i);
            ClipTextModel.Output masked = m.forward(in.get("input_ids"), in.get("attention_mask"));
            assertTrue(maxAbsDiff(masked.last(), out.get("masked.last_hidden_state")) < TOL, "masked: " + maxAbsDiff(masked.last(), out.get("masked.last_hidden_state")));
            assertTrue(maxAbsDiff(masked.pooled(), out.get("masked.pooler_output")) < TOL, "masked pooled");
        }
    }

    @Test
    void sdParameterCountsFromTheirConfigurations() {
        assertEquals(859_520_964L, UNet2DCondition.Config.sd15().parameterCount());
        assertEquals(123_060_480L, ClipTextModel.Config.vitL14().parameterCount());
    }
}
