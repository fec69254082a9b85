package org.pixelpost.model.autoencoder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.KeyLayout;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.nn.Layers;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Module;
import org.pixelpost.nn.blocks.Attention;
import org.pixelpost.nn.blocks.ResnetBlock2D;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The Stable Diffusion VAE in the diffusers layout ({@code encoder.down_blocks.0.resnets.0.conv1},
 * ...). Images are [-1, 1] natively and latents are scaled by {@code scalingFactor} (0.18215 for
 * SD 1.x). Checkpoints load from the diffusers layout, diffusers' legacy attention names
 * ({@code query/key/value/proj_attn}) and the original LDM names ({@code first_stage_model.*},
 * attention as 1x1 convolutions).
 */
public final class AutoencoderKL implements Autoencoder {
    public record Config(int inChannels, int outChannels, List<Integer> blockOutChannels, int layersPerBlock,
                         int latentChannels, int normNumGroups, double scalingFactor, double shiftFactor,
                         boolean midBlockAddAttention) {
        /** The SD 1.x / 2.x VAE. */
        public static Config sd() {
            return new Config(3, 3, List.of(128, 256, 512, 512), 2, 4, 32, 0.18215, 0.0, true);
        }

        /** A diffusers {@code AutoencoderKL} config; absent keys are SD's. */
        public static Config fromJson(JsonNode j) {
            return org.pixelpost.io.ConfigJson.read(Config.class, j, sd());
        }

        public ObjectNode toJson() {
            ObjectNode j = new ObjectMapper().createObjectNode().put("_class_name", "AutoencoderKL");
            j.setAll(org.pixelpost.io.ConfigJson.write(this));
            List<String> down = new ArrayList<>(), up = new ArrayList<>();
            for (int i = 0; i < blockOutChannels.size(); i++) {
                down.add("DownEncoderBlock2D");
                up.add("UpDecoderBlock2D");
            }
            down.forEach(j.putArray("down_block_types")::add);
            up.forEach(j.putArray("up_block_types")::add);
            j.put("act_fn", "silu");
            if (shiftFactor == 0) j.remove("shift_factor"); // SD's VAE has none
            return j;
        }
    }

    static final double EPS = 1e-6;

    static final class MidBlock extends Module {
        final ResnetBlock2D r0, r1;
        final Attention attn;

        MidBlock(int c, int groups, boolean attention) {
            r0 = add("resnets.0", new ResnetBlock2D(c, c, 0, groups, EPS));
            attn = attention ? add("attentions.0", Attention.spatial(c, groups, EPS)) : null;
            r1 = add("resnets.1", new ResnetBlock2D(c, c, 0, groups, EPS));
        }

        Tensor forward(Tensor x) {
            x = r0.forward(x);
            if (attn != null) x = attn.forwardSpatial(x);
            return r1.forward(x);
        }
    }

    static final class Encoder extends Module {
        final Conv2d convIn, convOut;
        final List<List<ResnetBlock2D>> blocks = new ArrayList<>();
        final List<Conv2d> down = new ArrayList<>();
        final MidBlock mid;
        final GroupNorm normOut;

        Encoder(Config c) {
            List<Integer> ch = c.blockOutChannels;
            convIn = add("conv_in", Conv2d.k3(c.inChannels, ch.get(0)));
            int prev = ch.get(0);
            for (int i = 0; i < ch.size(); i++) {
                List<ResnetBlock2D> rs = new ArrayList<>();
                for (int j = 0; j < c.layersPerBlock; j++)
                    rs.add(add("down_blocks." + i + ".resnets." + j, new ResnetBlock2D(j == 0 ? prev : ch.get(i), ch.get(i), 0, c.normNumGroups, EPS)));
                blocks.add(rs);
                down.add(i < ch.size() - 1 ? add("down_blocks." + i + ".downsamplers.0.conv", new Conv2d(ch.get(i), ch.get(i), 3, 2, 0, true)) : null);
                prev = ch.get(i);
            }
            mid = add("mid_block", new MidBlock(prev, c.normNumGroups, c.midBlockAddAttention));
            normOut = add("conv_norm_out", new GroupNorm(c.normNumGroups, prev, EPS));
            convOut = add("conv_out", Conv2d.k3(prev, 2 * c.latentChannels));
        }

        Tensor forward(Tensor x) {
            x = convIn.forward(x);
            for (int i = 0; i < blocks.size(); i++) {
                for (ResnetBlock2D r : blocks.get(i)) x = r.forward(x);
                // diffusers pads right and bottom by one before the stride-2 conv
                if (down.get(i) != null) x = down.get(i).forward(torch.constant_pad_nd(x, new long[] {0, 1, 0, 1}));
            }
            x = mid.forward(x);
            return convOut.forward(torch.silu(normOut.forward(x)));
        }
    }

    static final class Decoder extends Module {
        final Conv2d convIn, convOut;
        final MidBlock mid;
        final List<List<ResnetBlock2D>> blocks = new ArrayList<>();
        final List<Conv2d> up = new ArrayList<>();
        final GroupNorm normOut;

        Decoder(Config c) {
            List<Integer> rev = new ArrayList<>(c.blockOutChannels);
            java.util.Collections.reverse(rev);
            convIn = add("conv_in", Conv2d.k3(c.latentChannels, rev.get(0)));
            mid = add("mid_block", new MidBlock(rev.get(0), c.normNumGroups, c.midBlockAddAttention));
            int prev = rev.get(0);
            for (int i = 0; i < rev.size(); i++) {
                List<ResnetBlock2D> rs = new ArrayList<>();
                for (int j = 0; j <= c.layersPerBlock; j++)
                    rs.add(add("up_blocks." + i + ".resnets." + j, new ResnetBlock2D(j == 0 ? prev : rev.get(i), rev.get(i), 0, c.normNumGroups, EPS)));
                blocks.add(rs);
                up.add(i < rev.size() - 1 ? add("up_blocks." + i + ".upsamplers.0.conv", Conv2d.k3(rev.get(i), rev.get(i))) : null);
                prev = rev.get(i);
            }
            normOut = add("conv_norm_out", new GroupNorm(c.normNumGroups, prev, EPS));
            convOut = add("conv_out", Conv2d.k3(prev, c.outChannels));
        }

        /** One checkpoint segment per stage when gradient checkpointing is on: input and mid block, each up level, the head. */
        Tensor forward(Tensor z) {
            Tensor x = checkpoint(in -> mid.forward(convIn.forward(in[0])), z);                    // [B, c_top, h, w]
            for (int i = 0; i < blocks.size(); i++) {
                int level = i;
                x = checkpoint(in -> {
                    Tensor h = in[0];
                    for (ResnetBlock2D r : blocks.get(level)) h = r.forward(h);
                    return up.get(level) != null ? up.get(level).forward(Layers.upsample2x(h)) : h; // [B, c_i, 2h, 2w]
                }, x);
            }
            return checkpoint(in -> convOut.forward(torch.silu(normOut.forward(in[0]))), x);     // [B, 3, H, W]
        }
    }

    /** The encoder half as a module: the encoder stack and {@code quant_conv}. */
    static final class EncoderHalf extends Module {
        final Encoder encoder;
        final Conv2d quant;

        EncoderHalf(Config c) {
            encoder = add("encoder", new Encoder(c));
            quant = add("quant_conv", Conv2d.k1(2 * c.latentChannels, 2 * c.latentChannels, true));
        }
    }

    /** The decoder half: {@code post_quant_conv} and the decoder stack. */
    static final class DecoderHalf extends Module {
        final Decoder decoder;
        final Conv2d postQuant;

        DecoderHalf(Config c) {
            postQuant = add("post_quant_conv", Conv2d.k1(c.latentChannels, c.latentChannels, true));
            decoder = add("decoder", new Decoder(c));
        }
    }

    private final Config config;
    private final EncoderHalf enc;
    private final DecoderHalf dec;

    public AutoencoderKL(Config config) {
        this.config = config;
        try (Scope s = Scope.open()) { // initialisation temporaries are freed here, the parameters kept
            this.enc = new EncoderHalf(config);
            this.dec = new DecoderHalf(config);
        }
        enc.freeze();
        dec.freeze();
    }

    public Config config() { return config; }
    @Override public String name() { return "autoencoder-kl"; }
    @Override public int latentChannels() { return config.latentChannels; }
    @Override public int downsampling() { return 1 << (config.blockOutChannels.size() - 1); }
    @Override public double scalingFactor() { return config.scalingFactor; }
    @Override public double shiftFactor() { return config.shiftFactor; }
    @Override public PixelRange nativeRange() { return PixelRange.MINUS_ONE_ONE; }
    @Override public Module encoder() { return enc; }
    @Override public Module decoder() { return dec; }

    @Override
    public Tensor encode(Tensor images) {
        return toModelSpace(moments(images).narrow(1, 0, config.latentChannels));
    }

    /**
     * The posterior as diffusers' {@code DiagonalGaussianDistribution} has it, carried into model
     * space: the encoder's log-variance clamped to [-30, 20], then shifted by {@code 2 ln scaling_factor}
     * (a latent scaled by s has its standard deviation scaled by s).
     */
    @Override
    public Posterior posterior(Tensor images) {
        Tensor moments = moments(images);                                                   // [B, 2C, h, w]
        Tensor logvar = Tensors.clamp(moments.narrow(1, config.latentChannels, config.latentChannels), -30, 20); // [B, C, h, w]
        return new Posterior(toModelSpace(moments.narrow(1, 0, config.latentChannels)),
            logvar.add(Tensors.s(2 * Math.log(config.scalingFactor))));
    }

    /**
     * The posterior in the encoder's own (unscaled) latent space, as training sees it: {@code mean}
     * and {@code logvar} clamped to [-30, 20], as diffusers' {@code DiagonalGaussianDistribution}.
     */
    public Posterior rawPosterior(Tensor images) {
        Tensor moments = moments(images);                                                   // [B, 2C, h, w]
        return new Posterior(moments.narrow(1, 0, config.latentChannels),
            Tensors.clamp(moments.narrow(1, config.latentChannels, config.latentChannels), -30, 20));
    }

    /** Unscaled latents to images in [0, 1], not clamped: the decoder as training sees it. */
    public Tensor decodeRaw(Tensor z) {
        Tensor x = dec.decoder.forward(dec.postQuant.forward(z.contiguous(org.bytedeco.pytorch.global.torch.MemoryFormat.ChannelsLast)));
        return x.add(Tensors.s(1)).mul(Tensors.s(0.5)).contiguous();
    }

    /** The encoder's mean and log-variance, {@code [B, 2C, h, w]}. */
    private Tensor moments(Tensor images) {
        Tensor x = images.mul(Tensors.s(2)).sub(Tensors.s(1)).contiguous(org.bytedeco.pytorch.global.torch.MemoryFormat.ChannelsLast);
        return enc.quant.forward(enc.encoder.forward(x)).contiguous();
    }

    private Tensor toModelSpace(Tensor raw) {
        return raw.sub(Tensors.s(config.shiftFactor)).mul(Tensors.s(config.scalingFactor));
    }

    @Override
    public Tensor decode(Tensor latents) {
        Tensor z = latents.div(Tensors.s(config.scalingFactor)).add(Tensors.s(config.shiftFactor))
            .contiguous(org.bytedeco.pytorch.global.torch.MemoryFormat.ChannelsLast);
        Tensor x = dec.decoder.forward(dec.postQuant.forward(z));
        return x.add(Tensors.s(1)).mul(Tensors.s(0.5)).contiguous();
    }

    /** Every parameter under its diffusers key. */
    public Map<String, Tensor> stateDict() {
        Map<String, Tensor> sd = new java.util.LinkedHashMap<>(enc.parameters());
        sd.putAll(dec.parameters());
        return sd;
    }

    /** Writes {@code config.json} and {@code diffusion_pytorch_model.safetensors} (the diffusers layout). */
    public void save(Path dir) throws IOException {
        save(dir, config);
    }

    /** As {@link #save(Path)}, with {@code config} (the same architecture) written as the folder's config. */
    public void save(Path dir, Config config) throws IOException {
        if (!config.blockOutChannels.equals(this.config.blockOutChannels) || config.latentChannels != this.config.latentChannels
            || config.layersPerBlock != this.config.layersPerBlock || config.midBlockAddAttention != this.config.midBlockAddAttention
            || config.normNumGroups != this.config.normNumGroups || config.inChannels != this.config.inChannels || config.outChannels != this.config.outChannels)
            throw new IllegalArgumentException("save: the config describes another architecture than the weights'");
        org.pixelpost.io.ComponentFolder.write(dir, "diffusion_pytorch_model.safetensors", stateDict(), Map.of("format", "pt"), config.toJson());
    }

    /** This config with another {@code scaling_factor}. */
    public static Config withScaling(Config c, double scalingFactor) {
        return new Config(c.inChannels, c.outChannels, c.blockOutChannels, c.layersPerBlock, c.latentChannels, c.normNumGroups, scalingFactor,
            c.shiftFactor, c.midBlockAddAttention);
    }

    /**
     * Loads a diffusers folder ({@code config.json} + weights), or a single checkpoint file in any
     * accepted layout with the SD config.
     */
    public static AutoencoderKL load(Path path) throws IOException {
        Config config = Config.sd();
        Path weights = path;
        if (Files.isDirectory(path)) {
            if (Files.isRegularFile(path.resolve("config.json"))) config = org.pixelpost.io.ComponentFolder.config(path, "VAE", Config::fromJson);
            weights = org.pixelpost.io.ComponentFolder.weights(path, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors");
        }
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            return fromState(config, Checkpoints.read(weights), weights);
        }
    }

    /** A model of {@code config} with the weights in {@code stored} (any accepted layout; other keys are ignored). */
    public static AutoencoderKL fromState(Config config, Map<String, Tensor> stored, Path source) throws IOException {
        AutoencoderKL ae;
        try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta()) { // no random initialisation for weights about to be loaded
            ae = new AutoencoderKL(config);
        }
        try {
            Map<String, Tensor> sd = KeyLayout.pick(stored, ae.stateDict().keySet(), layouts(config));
            Map<String, Tensor> encPart = new java.util.LinkedHashMap<>(), decPart = new java.util.LinkedHashMap<>();
            sd.forEach((k, t) -> (k.startsWith("encoder.") || k.startsWith("quant_conv.") ? encPart : decPart).put(k, t));
            ae.enc.load(encPart, source);
            ae.dec.load(decPart, source);
        } catch (IOException | RuntimeException x) {
            ae.close();
            throw x;
        }
        return ae;
    }

    /** The original LDM name of a diffusers VAE key (for SD single files, with {@code first_stage_model.}). */
    public static String toLdmKey(String k, int levels) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("^decoder\\.up_blocks\\.(\\d+)\\.(resnets|upsamplers\\.0)\\.(.*)$").matcher(k);
        if (m.matches()) {
            int i = levels - 1 - Integer.parseInt(m.group(1));
            k = m.group(2).equals("resnets") ? "decoder.up." + i + ".block." + m.group(3) : "decoder.up." + i + ".upsample." + m.group(3);
        }
        return k.replaceAll("^encoder\\.down_blocks\\.(\\d+)\\.resnets\\.(\\d+)\\.", "encoder.down.$1.block.$2.")
            .replaceAll("^encoder\\.down_blocks\\.(\\d+)\\.downsamplers\\.0\\.conv\\.", "encoder.down.$1.downsample.conv.")
            .replaceAll("\\.mid_block\\.resnets\\.0\\.", ".mid.block_1.")
            .replaceAll("\\.mid_block\\.resnets\\.1\\.", ".mid.block_2.")
            .replaceAll("\\.mid_block\\.attentions\\.0\\.group_norm\\.", ".mid.attn_1.norm.")
            .replaceAll("\\.mid_block\\.attentions\\.0\\.to_q\\.", ".mid.attn_1.q.")
            .replaceAll("\\.mid_block\\.attentions\\.0\\.to_k\\.", ".mid.attn_1.k.")
            .replaceAll("\\.mid_block\\.attentions\\.0\\.to_v\\.", ".mid.attn_1.v.")
            .replaceAll("\\.mid_block\\.attentions\\.0\\.to_out\\.0\\.", ".mid.attn_1.proj_out.")
            .replaceAll("\\.conv_norm_out\\.", ".norm_out.")
            .replaceAll("\\.conv_shortcut\\.", ".nin_shortcut.");
    }

    /** Accepted layouts: diffusers, diffusers with legacy attention names, original LDM. */
    public static List<KeyLayout> layouts(Config c) {
        KeyLayout legacy = KeyLayout.rules("diffusers-legacy-attention", false,
            "\\.attentions\\.0\\.query\\.", ".attentions.0.to_q.",
            "\\.attentions\\.0\\.key\\.", ".attentions.0.to_k.",
            "\\.attentions\\.0\\.value\\.", ".attentions.0.to_v.",
            "\\.attentions\\.0\\.proj_attn\\.", ".attentions.0.to_out.0.");
        int n = c.blockOutChannels.size();
        KeyLayout ldm = new KeyLayout("ldm", (k, t) -> {
            if (k.startsWith("first_stage_model.")) k = k.substring("first_stage_model.".length());
            else if (!(k.startsWith("encoder.") || k.startsWith("decoder.") || k.startsWith("quant_conv.") || k.startsWith("post_quant_conv."))) return null;
            String m = ldmKey(k, n);
            // LDM stores the attention projections as 1x1 convolutions
            if (m.contains(".attentions.0.") && !m.contains("group_norm") && t.dim() == 4) t = t.flatten(1, -1);
            return Map.entry(m, t);
        });
        return List.of(KeyLayout.identity("diffusers"), legacy, ldm);
    }

    static String ldmKey(String k, int levels) {
        k = k.replaceAll("^encoder\\.down\\.(\\d+)\\.block\\.(\\d+)\\.", "encoder.down_blocks.$1.resnets.$2.")
             .replaceAll("^encoder\\.down\\.(\\d+)\\.downsample\\.conv\\.", "encoder.down_blocks.$1.downsamplers.0.conv.")
             .replaceAll("\\.mid\\.block_1\\.", ".mid_block.resnets.0.")
             .replaceAll("\\.mid\\.block_2\\.", ".mid_block.resnets.1.")
             .replaceAll("\\.mid\\.attn_1\\.norm\\.", ".mid_block.attentions.0.group_norm.")
             .replaceAll("\\.mid\\.attn_1\\.q\\.", ".mid_block.attentions.0.to_q.")
             .replaceAll("\\.mid\\.attn_1\\.k\\.", ".mid_block.attentions.0.to_k.")
             .replaceAll("\\.mid\\.attn_1\\.v\\.", ".mid_block.attentions.0.to_v.")
             .replaceAll("\\.mid\\.attn_1\\.proj_out\\.", ".mid_block.attentions.0.to_out.0.")
             .replaceAll("\\.norm_out\\.", ".conv_norm_out.")
             .replaceAll("\\.nin_shortcut\\.", ".conv_shortcut.");
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("^decoder\\.up\\.(\\d+)\\.(block|upsample)\\.(.*)$").matcher(k);
        if (m.matches()) {
            int i = levels - 1 - Integer.parseInt(m.group(1)); // LDM counts decoder levels from the output
            k = m.group(2).equals("block")
                ? "decoder.up_blocks." + i + ".resnets." + m.group(3)
                : "decoder.up_blocks." + i + ".upsamplers.0." + m.group(3);
        }
        return k;
    }
}
