package org.pixelpost.model;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.TestData;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.text.ClipTextEncoder;
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
            Tensor y = m.forward(in.get("sample"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), null));
            assertTrue(maxAbsDiff(y, out.get("sample")) < TOL, "sample: " + maxAbsDiff(y, out.get("sample")));
            Tensor y500 = m.forward(in.get("sample"), Tensors.fromFloats(new float[] {500}, 1).to(org.bytedeco.pytorch.global.torch.ScalarType.Long), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), null));
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
    void pixArtFromADiffusersFolderMatchesDiffusers() throws Exception {
        Path dir = oracle("pixart_tiny");
        try (DiT m = (DiT) Denoisers.load(dir, null); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            assertEquals(110_384, m.parameterCount());
            assertEquals(110_384, m.config().parameterCount());
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            Tensor y = m.forwardWithVariance(in.get("hidden_states"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), in.get("encoder_attention_mask")));
            assertTrue(maxAbsDiff(y, out.get("sample")) < TOL, "masked: " + maxAbsDiff(y, out.get("sample")));
            Tensor u = m.forwardWithVariance(in.get("hidden_states"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), null));
            assertTrue(maxAbsDiff(u, out.get("sample_nomask")) < TOL, "no mask: " + maxAbsDiff(u, out.get("sample_nomask")));
            Tensor r = m.forwardWithVariance(in.get("hidden_states_8x12"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), in.get("encoder_attention_mask")));
            assertTrue(maxAbsDiff(r, out.get("sample_8x12")) < TOL, "8x12: " + maxAbsDiff(r, out.get("sample_8x12")));
            // the denoiser contract keeps the prediction half of the learned-variance output
            assertTrue(maxAbsDiff(m.forward(in.get("hidden_states"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), in.get("encoder_attention_mask"))),
                out.get("sample").narrow(1, 0, 4)) < TOL);
        }
    }

    @Test
    void autoencoderKLMatchesDiffusers() throws Exception {
        Path dir = oracle("vae_tiny");
        try (AutoencoderKL vae = AutoencoderKL.load(dir); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            Tensor z = vae.encode(in.get("image01"));
            assertTrue(maxAbsDiff(z, out.get("encode_model_space")) < TOL, "encode: " + maxAbsDiff(z, out.get("encode_model_space")));
            // the posterior as diffusers' latent_dist has it (raw space), carried into model space
            var post = vae.posterior(in.get("image01"));
            double sf = vae.scalingFactor();
            assertTrue(maxAbsDiff(post.mean(), out.get("encode_model_space")) < TOL, "posterior mean");
            Tensor rawLogvar = post.logvar().sub(Tensors.s(2 * Math.log(sf)));
            assertTrue(maxAbsDiff(rawLogvar, out.get("posterior_logvar")) < TOL, "logvar: " + maxAbsDiff(rawLogvar, out.get("posterior_logvar")));
            Tensor rawStd = post.std().div(Tensors.s(sf));
            assertTrue(maxAbsDiff(rawStd, out.get("posterior_std")) < TOL, "std: " + maxAbsDiff(rawStd, out.get("posterior_std")));
            try (org.pixelpost.tensor.Generator g1 = org.pixelpost.tensor.Generator.seeded(5); org.pixelpost.tensor.Generator g2 = org.pixelpost.tensor.Generator.seeded(5)) {
                Tensor draw = post.sample(g1), eps = g2.randnLike(post.mean());
                assertTrue(maxAbsDiff(draw, post.mean().add(post.std().mul(eps))) < 1e-7, "a draw is mean + std * eps from the given generator");
                assertTrue(maxAbsDiff(draw, post.mean()) > 1e-4, "and differs from the mean");
            }
            // diffusers' clamp: an encoder whose log-variance would leave [-30, 20] is held at the bounds
            Tensor bias = vae.encoder().parameters().get("quant_conv.bias");
            long c = vae.latentChannels();
            for (double push : new double[] {1000, -1000}) {
                bias.narrow(0, c, c).add_(Tensors.s(push));
                Tensor lv = vae.posterior(in.get("image01")).logvar().sub(Tensors.s(2 * Math.log(sf)));
                assertEquals(push > 0 ? 20 : -30, Tensors.item(lv.max()), 1e-4);
                assertEquals(push > 0 ? 20 : -30, Tensors.item(lv.min()), 1e-4);
                bias.narrow(0, c, c).sub_(Tensors.s(push));
            }
            Tensor x = vae.decode(in.get("latents"));
            assertTrue(maxAbsDiff(x, out.get("decode_01")) < TOL, "decode: " + maxAbsDiff(x, out.get("decode_01")));
            // the checkpointed decoder computes the same image and the same gradient at its input
            Tensor[] image = new Tensor[2], grad = new Tensor[2];
            for (int ckpt = 0; ckpt < 2; ckpt++) {
                vae.decoder().gradientCheckpointing(ckpt == 1);
                try (var on = new org.bytedeco.pytorch.AutoGradMode(true)) {
                    Tensor lat = in.get("latents").detach().clone().requires_grad_(true);
                    image[ckpt] = vae.decode(lat);
                    image[ckpt].square().sum().backward();
                    grad[ckpt] = lat.grad().clone();
                }
            }
            vae.decoder().gradientCheckpointing(false);
            assertTrue(maxAbsDiff(image[1], x) < 1e-6 && maxAbsDiff(image[0], x) < 1e-6);
            assertTrue(Tensors.item(grad[0].abs().max()) > 0, "gradients reached the latents");
            assertTrue(maxAbsDiff(grad[1], grad[0]) < 1e-5 * Tensors.item(grad[0].abs().max()), "checkpointed input gradient: " + maxAbsDiff(grad[1], grad[0]));
        }
    }

    @Test
    void clipSkipTakesTheHiddenStateBeforeTheLastLayerThenTheFinalNorm() throws Exception {
        Path dir = oracle("clip_text_tiny");
        try (ClipTextModel m = ClipTextModel.load(dir); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            ClipTextEncoder skip1 = new ClipTextEncoder(null, m, 1), skip2 = new ClipTextEncoder(null, m, 2);
            assertTrue(maxAbsDiff(skip1.features(in.get("input_ids")), out.get("last_hidden_state")) < TOL);
            Tensor expected = m.finalLayerNorm(out.get("hidden_states.1"));
            assertTrue(maxAbsDiff(skip2.features(in.get("input_ids")), expected) < TOL);
            assertThrows(IllegalArgumentException.class, () -> new ClipTextEncoder(null, m, 3), "only as many layers as the model has");
        }
    }

    @Test
    void sdParameterCountsFromTheirConfigurations() {
        assertEquals(859_520_964L, UNet2DCondition.Config.sd15().parameterCount());
        assertEquals(123_060_480L, ClipTextModel.Config.vitL14().parameterCount());
    }
}
