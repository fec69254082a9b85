package org.pixelpost.model.autoencoder;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class AutoencoderKLTest {
    static AutoencoderKL sd;

    @BeforeAll
    static void build() {
        Engine.seed(11);
        sd = new AutoencoderKL(AutoencoderKL.Config.sd());
    }

    @Test
    void sd15ConfigHasThePublishedParameterCounts() {
        Map<String, Tensor> p = sd.stateDict();
        long enc = sum(p, "encoder."), dec = sum(p, "decoder."), quant = sum(p, "quant_conv."), post = sum(p, "post_quant_conv.");
        assertEquals(34_163_592, enc);
        assertEquals(49_490_179, dec);
        assertEquals(72 + 20, quant + post);
        assertEquals(83_653_863, enc + dec + quant + post);
        assertEquals(83_653_863, sd.parameterCount());
    }

    @Test
    void savedDiffusersLayoutReloadsBitExactly(@TempDir Path dir) throws Exception {
        sd.save(dir.resolve("vae"));
        AutoencoderKL back = AutoencoderKL.load(dir.resolve("vae"));
        assertEquals(sd.config(), back.config());
        assertIdentical(sd.stateDict(), back.stateDict());
        // zero missing or unexpected keys: the file holds exactly the model's keys
        try (SafeTensors f = SafeTensors.open(dir.resolve("vae/diffusion_pytorch_model.safetensors"))) {
            assertEquals(sd.stateDict().keySet(), f.entries().keySet());
        }
    }

    @Test
    void loadsLegacyAttentionNamesAndTheOriginalLdmLayout(@TempDir Path dir) throws Exception {
        Map<String, Tensor> legacy = new LinkedHashMap<>(), ldm = new LinkedHashMap<>();
        ldm.put("model.diffusion_model.input_blocks.0.0.weight", torch.zeros(1)); // other parts of a full checkpoint are ignored
        for (Map.Entry<String, Tensor> e : sd.stateDict().entrySet()) {
            String k = e.getKey();
            legacy.put(k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.").replace(".to_out.0.", ".proj_attn."), e.getValue());
            Tensor t = e.getValue();
            if (k.contains("attentions.0.to_") && t.dim() == 2) t = t.view(t.size(0), t.size(1), 1, 1);
            ldm.put("first_stage_model." + toLdm(k), t);
        }
        SafeTensors.write(dir.resolve("legacy.safetensors"), legacy);
        SafeTensors.write(dir.resolve("sd-v1-5.safetensors"), ldm);
        assertIdentical(sd.stateDict(), AutoencoderKL.load(dir.resolve("legacy.safetensors")).stateDict());
        assertIdentical(sd.stateDict(), AutoencoderKL.load(dir.resolve("sd-v1-5.safetensors")).stateDict());
    }

    @Test
    void encodesAndDecodesWithSdConventions() {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor x = torch.rand(1, 3, 32, 32);
            Tensor z = sd.encode(x);
            assertArrayEquals(new long[] {1, 4, 4, 4}, Tensors.shape(z));
            assertArrayEquals(new long[] {1, 3, 32, 32}, Tensors.shape(sd.decode(z)));
            assertEquals(0.18215, sd.scalingFactor());
            assertEquals(Autoencoder.PixelRange.MINUS_ONE_ONE, sd.nativeRange());
        }
    }

    /** The original LDM names, written independently of the loader's mapping. */
    static String toLdm(String k) {
        String[] p = k.split("\\.");
        StringBuilder b = new StringBuilder();
        if (k.startsWith("encoder.down_blocks.")) {
            b.append("encoder.down.").append(p[2]);
            b.append(p[3].equals("resnets") ? ".block." + p[4] : ".downsample");
            return b + "." + String.join(".", List.of(p).subList(5, p.length)).replace("conv_shortcut", "nin_shortcut");
        }
        if (k.startsWith("decoder.up_blocks.")) {
            b.append("decoder.up.").append(3 - Integer.parseInt(p[2]));
            b.append(p[3].equals("resnets") ? ".block." + p[4] : ".upsample");
            return b + "." + String.join(".", List.of(p).subList(5, p.length)).replace("conv_shortcut", "nin_shortcut");
        }
        return k.replace("mid_block.resnets.0.", "mid.block_1.").replace("mid_block.resnets.1.", "mid.block_2.")
            .replace("mid_block.attentions.0.group_norm.", "mid.attn_1.norm.")
            .replace("mid_block.attentions.0.to_q.", "mid.attn_1.q.").replace("mid_block.attentions.0.to_k.", "mid.attn_1.k.")
            .replace("mid_block.attentions.0.to_v.", "mid.attn_1.v.").replace("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out.")
            .replace("conv_norm_out.", "norm_out.");
    }

    static void assertIdentical(Map<String, Tensor> a, Map<String, Tensor> b) {
        assertEquals(a.keySet(), b.keySet());
        for (String k : a.keySet()) assertTrue(torch.equal(a.get(k), b.get(k)), k);
    }

    static long sum(Map<String, Tensor> p, String prefix) {
        return p.entrySet().stream().filter(e -> e.getKey().startsWith(prefix)).mapToLong(e -> e.getValue().numel()).sum();
    }
}
