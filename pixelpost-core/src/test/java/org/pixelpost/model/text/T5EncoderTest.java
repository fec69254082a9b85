package org.pixelpost.model.text;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.TestData;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** The T5 v1.1 encoder against transformers' own T5EncoderModel (../shared/oracle/t5_encoder_tiny). */
class T5EncoderTest {
    static final Path DIR = TestData.shared().resolve("oracle/t5_encoder_tiny");

    static double maxAbsDiff(Tensor a, Tensor b) {
        return Tensors.item(a.sub(b.to(a.scalar_type())).abs().max());
    }

    @Test
    void matchesTransformersWithPixArtsPaddingMaskAndWithout() throws Exception {
        try (T5EncoderModel m = T5EncoderModel.load(DIR); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            assertEquals(53_024, m.parameterCount());
            assertEquals(53_024, m.config().parameterCount(), "counted from the configuration alone");
            Map<String, Tensor> in = SafeTensors.read(DIR.resolve("inputs.safetensors")), out = SafeTensors.read(DIR.resolve("outputs.safetensors"));
            Tensor masked = m.forward(in.get("input_ids"), in.get("attention_mask"));               // [4, 120, 32], padded queries too
            assertTrue(maxAbsDiff(masked, out.get("last_hidden_state")) < 1e-4, "masked: " + maxAbsDiff(masked, out.get("last_hidden_state")));
            Tensor plain = m.forward(in.get("input_ids_short"), null);
            assertTrue(maxAbsDiff(plain, out.get("last_hidden_state_no_mask")) < 1e-4, "unmasked: " + maxAbsDiff(plain, out.get("last_hidden_state_no_mask")));
            // the float64 reference bounds our float32 rounding too
            Map<String, Tensor> f64 = SafeTensors.read(DIR.resolve("outputs_f64.safetensors"));
            assertTrue(maxAbsDiff(masked, f64.get("last_hidden_state")) < 1e-4);
        }
    }

    @Test
    void relativePositionsFallInT5sBuckets() {
        try (Scope s = Scope.open()) {
            // 32 buckets, max distance 128: offsets 0..7 exact, then logarithmic; the positive half starts at 16
            float[] b = Tensors.toFloats(T5EncoderModel.buckets(200, 32, 128).select(0, 0).to(org.bytedeco.pytorch.global.torch.ScalarType.Float));
            assertEquals(0, b[0]);
            assertEquals(16 + 1, b[1]);
            assertEquals(16 + 7, b[7]);
            assertEquals(16 + 8, b[8]);                     // 8 + floor(log(8/8)/log(16) * 8)
            assertEquals(16 + 8 + (int) Math.floor(Math.log(20 / 8.0) / Math.log(16) * 8), b[20]);
            assertEquals(31, b[199], "beyond the maximum distance: the last bucket");
            float[] back = Tensors.toFloats(T5EncoderModel.buckets(200, 32, 128).select(0, 199).to(org.bytedeco.pytorch.global.torch.ScalarType.Float));
            assertEquals(15, back[0], "the negative direction's last bucket");
            assertEquals(3, back[196]);
        }
    }

    @Test
    void theXxlEncoderIsCountedFromItsConfigWithoutAllocating() {
        assertEquals(4_762_310_656L, T5EncoderModel.Config.v11Xxl().parameterCount());
        T5EncoderModel.Config c = T5EncoderModel.Config.fromJson(T5EncoderModel.Config.v11Xxl().toJson());
        assertEquals(T5EncoderModel.Config.v11Xxl(), c);
    }
}
