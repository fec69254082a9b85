package org.pixelpost.model.denoiser;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.KeyLayout;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.io.ConfigJson.Key;
import org.pixelpost.io.ConfigJson.Required;
import org.pixelpost.nn.Layers;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Module;
import org.pixelpost.nn.blocks.Embeddings;
import org.pixelpost.nn.blocks.ResnetBlock2D;
import org.pixelpost.nn.blocks.Transformer2D;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The latent U-Net of Stable Diffusion 1.x / 2.x ({@code UNet2DConditionModel}), built from a
 * diffusers {@code unet/config.json}: residual blocks with the time embedding, spatial transformers
 * with self- and cross-attention and GEGLU feed-forwards, skip connections from the down path to
 * the up path, strided-conv downsampling and nearest-neighbour upsampling. Parameter names are
 * diffusers'; the original LDM names ({@code input_blocks}, {@code middle_block},
 * {@code output_blocks}, {@code time_embed}, {@code out}) load too.
 */
public final class UNet2DCondition extends Module implements Denoiser {
    public static final String CLASS_NAME = "UNet2DConditionModel";

    /** The options of a diffusers {@code UNet2DConditionModel} config that the SD 1.x / 2.x family uses. */
    public record Config(@Required int inChannels, @Required int outChannels, int sampleSize, @Required List<Integer> blockOutChannels,
                         @Required int layersPerBlock, @Required List<String> downBlockTypes, @Required List<String> upBlockTypes,
                         @Key("attention_head_dim") List<Integer> attentionHeads,
                         @Required int crossAttentionDim, int normNumGroups, double normEps, boolean useLinearProjection,
                         boolean upcastAttention, boolean flipSinToCos, double freqShift, int downsamplePadding,
                         int transformerLayersPerBlock) {
        static final List<String> DOWN = List.of("CrossAttnDownBlock2D", "DownBlock2D");
        static final List<String> UP = List.of("CrossAttnUpBlock2D", "UpBlock2D");

        public Config {
            Checks.atLeast("in_channels", inChannels, 1);
            Checks.atLeast("out_channels", outChannels, 1);
            Checks.atLeast("layers_per_block", layersPerBlock, 1);
            Checks.atLeast("cross_attention_dim", crossAttentionDim, 1);
            for (int c : blockOutChannels) Checks.atLeast("block_out_channels", c, 1);
            for (int h : attentionHeads) Checks.atLeast("attention_head_dim", h, 1);
            int n = blockOutChannels.size();
            if (n == 0 || downBlockTypes.size() != n || upBlockTypes.size() != n || attentionHeads.size() != n)
                throw new IllegalArgumentException("block_out_channels, down_block_types, up_block_types and attention heads must have one entry per level ("
                    + n + ")");
            for (String t : downBlockTypes) if (!DOWN.contains(t)) throw new InvalidValueException("down_block_types", "'" + t + "' is not built here; known: " + DOWN);
            for (String t : upBlockTypes) if (!UP.contains(t)) throw new InvalidValueException("up_block_types", "'" + t + "' is not built here; known: " + UP);
            for (int i = 0; i < n; i++) {
                if (blockOutChannels.get(i) % normNumGroups != 0)
                    throw new InvalidValueException("block_out_channels", blockOutChannels.get(i) + " is not divisible by norm_num_groups " + normNumGroups);
                if (blockOutChannels.get(i) % attentionHeads.get(i) != 0)
                    throw new InvalidValueException("attention_head_dim", blockOutChannels.get(i) + " channels are not divisible by " + attentionHeads.get(i) + " heads");
            }
            blockOutChannels = List.copyOf(blockOutChannels);
            downBlockTypes = List.copyOf(downBlockTypes);
            upBlockTypes = List.copyOf(upBlockTypes);
            attentionHeads = List.copyOf(attentionHeads);
        }

        /** Stable Diffusion 1.x: 859,520,964 parameters. */
        public static Config sd15() {
            return new Config(4, 4, 64, List.of(320, 640, 1280, 1280), 2,
                List.of("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                List.of("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                List.of(8, 8, 8, 8), 768, 32, 1e-5, false, false, true, 0, 1, 1);
        }

        /** Stable Diffusion 2.x: head size 64 (5, 10, 20, 20 heads), OpenCLIP-H text (1024), linear projections. */
        public static Config sd2() {
            Config c = sd15();
            return new Config(4, 4, 96, c.blockOutChannels, 2, c.downBlockTypes, c.upBlockTypes, List.of(5, 10, 20, 20), 1024, 32, 1e-5,
                true, true, true, 0, 1, 1);
        }

        /**
         * From diffusers' config. {@code attention_head_dim} is diffusers' legacy name for the number of
         * heads (an int or one per level) unless {@code num_attention_heads} is given.
         */
        public static Config fromJson(JsonNode j) {
            for (String k : List.of("class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim"))
                if (j.hasNonNull(k)) throw new InvalidValueException(k, j.get(k) + " is not supported (SD 1.x / 2.x U-Nets have none)");
            if (j.has("transformer_layers_per_block") && j.get("transformer_layers_per_block").isArray())
                throw new InvalidValueException("transformer_layers_per_block", "one count per level is not supported (SD 1.x / 2.x use one)");
            if (j.hasNonNull("mid_block_type") && !j.get("mid_block_type").asText().equals("UNetMidBlock2DCrossAttn"))
                throw new InvalidValueException("mid_block_type", "'" + j.get("mid_block_type").asText() + "' is not built here; known: UNetMidBlock2DCrossAttn");
            JsonNode cross = j.get("cross_attention_dim");
            if (cross != null && cross.isArray()) throw new InvalidValueException("cross_attention_dim", "one value per level is not supported");
            JsonNode boc = j.get("block_out_channels");
            if (boc == null || !boc.isArray() || boc.isEmpty()) throw new InvalidValueException("block_out_channels", "is missing (a list of channel counts)");
            // the head count per level: num_attention_heads, else diffusers' legacy attention_head_dim, an int or one per level
            JsonNode heads = j.hasNonNull("num_attention_heads") ? j.get("num_attention_heads") : j.get("attention_head_dim");
            if (heads == null) throw new InvalidValueException("attention_head_dim", "is missing");
            ObjectNode n = ((ObjectNode) j).deepCopy();
            ArrayNode perLevel = n.putArray("attention_head_dim");
            if (heads.isArray()) heads.forEach(perLevel::add);
            else for (int i = 0; i < boc.size(); i++) perLevel.add(Checks.integer("attention_head_dim", heads, 1));
            return org.pixelpost.io.ConfigJson.read(Config.class, n, sd15());
        }

        public ObjectNode toJson() {
            ObjectNode j = new ObjectMapper().createObjectNode().put("_class_name", CLASS_NAME);
            j.setAll(org.pixelpost.io.ConfigJson.write(this));
            if (attentionHeads.stream().distinct().count() == 1) j.put("attention_head_dim", attentionHeads.get(0));
            return j.put("mid_block_type", "UNetMidBlock2DCrossAttn").put("act_fn", "silu").put("center_input_sample", false);
        }

        /** The parameter count this configuration builds, from the configuration alone (built on the meta device: nothing allocated). */
        public long parameterCount() {
            try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta(); UNet2DCondition counter = new UNet2DCondition(this)) {
                return counter.parameterCount();
            }
        }
    }

    /** One level of the down path: resnets (with spatial transformers in a cross-attention block), then a strided conv. */
    static final class DownBlock extends Module {
        final List<ResnetBlock2D> resnets = new ArrayList<>();
        final List<Transformer2D> attentions = new ArrayList<>();
        final Conv2d downsampler;

        DownBlock(Config c, UNet2DCondition u, int in, int out, int temb, int heads, boolean cross, boolean last) {
            for (int j = 0; j < c.layersPerBlock; j++) {
                resnets.add(add("resnets." + j, u.resnet(j == 0 ? in : out, out, temb, c)));
                if (cross) attentions.add(add("attentions." + j, u.transformer(out, heads, c)));
            }
            downsampler = last ? null : add("downsamplers.0.conv", u.conv(out, out, 3, 2, c.downsamplePadding));
        }
    }

    /** One level of the up path: resnets over [hidden; skip] (with transformers in a cross-attention block), then upsampling. */
    static final class UpBlock extends Module {
        final List<ResnetBlock2D> resnets = new ArrayList<>();
        final List<Transformer2D> attentions = new ArrayList<>();
        final Conv2d upsampler;

        UpBlock(Config c, UNet2DCondition u, int in, int out, int prevOut, int temb, int heads, boolean cross, boolean last) {
            int n = c.layersPerBlock + 1;
            for (int j = 0; j < n; j++) {
                int skip = j == n - 1 ? in : out, resIn = j == 0 ? prevOut : out;
                resnets.add(add("resnets." + j, u.resnet(resIn + skip, out, temb, c)));
                if (cross) attentions.add(add("attentions." + j, u.transformer(out, heads, c)));
            }
            upsampler = last ? null : add("upsamplers.0.conv", u.conv(out, out, 3, 1, 1));
        }
    }

    private final Config config;
    private Conv2d convIn, convOut;
    private Linear timeLinear1, timeLinear2;
    private final List<DownBlock> down = new ArrayList<>();
    private final List<UpBlock> up = new ArrayList<>();
    private ResnetBlock2D midRes0, midRes1;
    private Transformer2D midAttn;
    private GroupNorm normOut;

    public UNet2DCondition(Config c) {
        this.config = c;
        try (Scope s = Scope.open()) { // initialisation temporaries are freed here, the parameters kept
            build(c);
        }
    }

    private void build(Config c) {
        List<Integer> boc = c.blockOutChannels;
        int n = boc.size(), c0 = boc.get(0), temb = 4 * c0;
        convIn = add("conv_in", conv(c.inChannels, c0, 3, 1, 1));
        timeLinear1 = add("time_embedding.linear_1", linear(c0, temb));
        timeLinear2 = add("time_embedding.linear_2", linear(temb, temb));
        int out = c0;
        for (int i = 0; i < n; i++) {
            int in = out;
            out = boc.get(i);
            down.add(add("down_blocks." + i, new DownBlock(c, this, in, out, temb, c.attentionHeads.get(i),
                c.downBlockTypes.get(i).equals("CrossAttnDownBlock2D"), i == n - 1)));
        }
        int top = boc.get(n - 1);
        midRes0 = add("mid_block.resnets.0", resnet(top, top, temb, c));
        midAttn = add("mid_block.attentions.0", transformer(top, c.attentionHeads.get(n - 1), c));
        midRes1 = add("mid_block.resnets.1", resnet(top, top, temb, c));
        List<Integer> rev = new ArrayList<>(boc);
        java.util.Collections.reverse(rev);
        List<Integer> revHeads = new ArrayList<>(c.attentionHeads);
        java.util.Collections.reverse(revHeads);
        int outUp = rev.get(0);
        for (int i = 0; i < n; i++) {
            int prev = outUp;
            outUp = rev.get(i);
            int in = rev.get(Math.min(i + 1, n - 1));
            up.add(add("up_blocks." + i, new UpBlock(c, this, in, outUp, prev, temb, revHeads.get(i),
                c.upBlockTypes.get(i).equals("CrossAttnUpBlock2D"), i == n - 1)));
        }
        normOut = add("conv_norm_out", new GroupNorm(c.normNumGroups, c0, c.normEps));
        convOut = add("conv_out", conv(c0, c.outChannels, 3, 1, 1));
    }

    // layer factories: the blocks build their layers through these
    Conv2d conv(int in, int out, int k, int stride, int pad) {
        return new Conv2d(in, out, k, stride, pad, true);
    }

    Linear linear(int in, int out) {
        return new Linear(in, out);
    }

    ResnetBlock2D resnet(int in, int out, int temb, Config c) {
        return new ResnetBlock2D(in, out, temb, c.normNumGroups, c.normEps);
    }

    Transformer2D transformer(int ch, int heads, Config c) {
        return new Transformer2D(ch, heads, ch / heads, c.transformerLayersPerBlock, c.crossAttentionDim, c.normNumGroups, c.useLinearProjection);
    }

    public Config config() { return config; }
    @Override public Module module() { return this; }
    @Override public String className() { return CLASS_NAME; }
    @Override public String componentName() { return "unet"; }

    @Override
    public String originalName(String key) {
        try {
            return toLdmKey(key, config);
        } catch (IllegalArgumentException e) {
            return null; // a layer without an LDM name
        }
    }
    @Override public ObjectNode configJson() { return config.toJson(); }

    /**
     * @param zT {@code [B, C, H, W]} noisy latents; {@code t} timesteps {@code [B]} (or one, broadcast);
     * @param cond text tokens {@code [B, T, crossAttentionDim]}; the mask is not used (SD attends to every token)
     */
    @Override
    public Tensor forward(Tensor zT, Tensor t, org.pixelpost.model.Conditioning cond) {
        Tensor textTokens = cond.tokens();                                                           // [B, T, D]
        // each unit below is one checkpoint segment when gradient checkpointing is on (a plain call otherwise)
        long b = zT.size(0);
        Tensor tt = t.dim() == 0 || t.size(0) == 1 ? t.reshape(1).expand(b) : t;                    // [B]
        Tensor tFreq = Embeddings.timestep(tt, config.blockOutChannels.get(0), config.flipSinToCos, config.freqShift)
            .to(zT.scalar_type());                                                                   // [B, c0]
        Tensor emb = checkpoint(in -> timeLinear2.forward(torch.silu(timeLinear1.forward(in[0]))), tFreq); // [B, 4 c0]
        Tensor x = checkpoint(in -> convIn.forward(in[0]), zT);                                     // [B, c0, H, W]
        List<Tensor> skips = new ArrayList<>();
        skips.add(x);
        for (DownBlock blk : down) {
            for (int j = 0; j < blk.resnets.size(); j++) {
                ResnetBlock2D res = blk.resnets.get(j);
                Transformer2D attn = blk.attentions.isEmpty() ? null : blk.attentions.get(j);
                x = checkpoint(in -> {
                    Tensor y = res.forward(in[0], in[1]);                                            // [B, c_i, h, w]
                    return attn == null ? y : attn.forward(y, in[2]);
                }, x, emb, textTokens);
                skips.add(x);
            }
            if (blk.downsampler != null) {
                x = checkpoint(in -> blk.downsampler.forward(in[0]), x);                             // [B, c_i, h/2, w/2]
                skips.add(x);
            }
        }
        x = checkpoint(in -> midRes1.forward(midAttn.forward(midRes0.forward(in[0], in[1]), in[2]), in[1]), x, emb, textTokens); // [B, c_top, h, w]
        for (UpBlock blk : up) {
            for (int j = 0; j < blk.resnets.size(); j++) {
                ResnetBlock2D res = blk.resnets.get(j);
                Transformer2D attn = blk.attentions.isEmpty() ? null : blk.attentions.get(j);
                Tensor skip = skips.remove(skips.size() - 1);
                x = checkpoint(in -> {
                    Tensor y = res.forward(torch.cat(new TensorVector(in[0], in[1]), 1), in[2]);      // [B, c_i, h, w]
                    return attn == null ? y : attn.forward(y, in[3]);
                }, x, skip, emb, textTokens);
            }
            if (blk.upsampler != null) {
                Tensor next = skips.get(skips.size() - 1);                                           // upsample to the skip's size
                long[] size = {next.size(2), next.size(3)};
                x = checkpoint(in -> blk.upsampler.forward(torch.upsample_nearest2d(in[0], size)), x);
            }
        }
        return checkpoint(in -> convOut.forward(torch.silu(normOut.forward(in[0]))), x);             // [B, out, H, W]
    }

    /** Writes {@code config.json} and {@code diffusion_pytorch_model.safetensors} (the diffusers layout). */
    @Override
    public void save(Path dir) throws IOException {
        org.pixelpost.io.ComponentFolder.write(dir, "diffusion_pytorch_model.safetensors", parameters(), Map.of("format", "pt"), config.toJson());
    }

    /** A diffusers {@code unet/} folder: {@code config.json} and the weights in diffusers' or the LDM key layout. */
    public static UNet2DCondition load(Path dir) throws IOException {
        Config c = org.pixelpost.io.ComponentFolder.config(dir, "U-Net", Config::fromJson);
        Path w = org.pixelpost.io.ComponentFolder.weights(dir, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors");
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            return fromState(c, Checkpoints.read(w), w);
        }
    }

    /** A U-Net of {@code c} with the weights in {@code stored} (diffusers or LDM names; other keys are ignored). */
    public static UNet2DCondition fromState(Config c, Map<String, Tensor> stored, Path source) throws IOException {
        UNet2DCondition m;
        try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta()) { // no random initialisation for weights about to be loaded
            m = new UNet2DCondition(c);
        }
        return loaded(m, KeyLayout.pick(stored, m.parameters().keySet(), layouts(c)), source);
    }

    /** Accepted key layouts: diffusers, and the original LDM names (with or without {@code model.diffusion_model.}). */
    public static List<KeyLayout> layouts(Config c) {
        return List.of(new KeyLayout("diffusers", (k, t) -> k.startsWith("model.diffusion_model.") || k.startsWith("first_stage_model.")
            || k.startsWith("cond_stage_model.") ? null : Map.entry(k, t)), new KeyLayout("ldm", (k, t) -> {
            String key = k.startsWith("model.diffusion_model.") ? k.substring("model.diffusion_model.".length()) : k;
            String m = ldmKey(key, c);
            return m == null ? null : Map.entry(m, t);
        }));
    }

    /** The diffusers name of an original LDM U-Net key, or null for a key that is not the U-Net's. */
    public static String ldmKey(String k, Config c) {
        int per = c.layersPerBlock + 1;
        String r;
        java.util.regex.Matcher m;
        if (k.startsWith("time_embed.0.")) return "time_embedding.linear_1." + rest(k, 2);
        if (k.startsWith("time_embed.2.")) return "time_embedding.linear_2." + rest(k, 2);
        if (k.startsWith("input_blocks.0.0.")) return "conv_in." + rest(k, 3);
        if (k.startsWith("out.0.")) return "conv_norm_out." + rest(k, 2);
        if (k.startsWith("out.2.")) return "conv_out." + rest(k, 2);
        if ((m = java.util.regex.Pattern.compile("^input_blocks\\.(\\d+)\\.(\\d+)\\.(.*)$").matcher(k)).matches()) {
            int i = Integer.parseInt(m.group(1)), sub = Integer.parseInt(m.group(2));
            int block = (i - 1) / per, layer = (i - 1) % per;
            if (layer == c.layersPerBlock) return m.group(3).startsWith("op.") ? "down_blocks." + block + ".downsamplers.0.conv." + m.group(3).substring(3) : null;
            r = sub == 0 ? "down_blocks." + block + ".resnets." + layer + "." + resnetKey(m.group(3)) : "down_blocks." + block + ".attentions." + layer + "." + m.group(3);
            return r;
        }
        if ((m = java.util.regex.Pattern.compile("^middle_block\\.(\\d)\\.(.*)$").matcher(k)).matches()) {
            return switch (m.group(1)) {
                case "0" -> "mid_block.resnets.0." + resnetKey(m.group(2));
                case "1" -> "mid_block.attentions.0." + m.group(2);
                case "2" -> "mid_block.resnets.1." + resnetKey(m.group(2));
                default -> null;
            };
        }
        if ((m = java.util.regex.Pattern.compile("^output_blocks\\.(\\d+)\\.(\\d+)\\.(.*)$").matcher(k)).matches()) {
            int i = Integer.parseInt(m.group(1)), sub = Integer.parseInt(m.group(2));
            int block = i / per, layer = i % per;
            String tail = m.group(3);
            if (sub == 0) return "up_blocks." + block + ".resnets." + layer + "." + resnetKey(tail);
            // the upsampler is the last module of the level's last layer: index 1 without attention, 2 with
            if (tail.startsWith("conv.")) return "up_blocks." + block + ".upsamplers.0.conv." + tail.substring(5);
            return "up_blocks." + block + ".attentions." + layer + "." + tail;
        }
        return null;
    }

    private static String rest(String k, int dropped) {
        String[] p = k.split("\\.", dropped + 1);
        return p[dropped];
    }

    /** The LDM residual block's names to diffusers'. */
    private static String resnetKey(String k) {
        return k.replaceFirst("^in_layers\\.0\\.", "norm1.").replaceFirst("^in_layers\\.2\\.", "conv1.")
            .replaceFirst("^emb_layers\\.1\\.", "time_emb_proj.").replaceFirst("^out_layers\\.0\\.", "norm2.")
            .replaceFirst("^out_layers\\.3\\.", "conv2.").replaceFirst("^skip_connection\\.", "conv_shortcut.");
    }

    /** The inverse: diffusers U-Net keys to the original LDM names (for single-file export). */
    public static String toLdmKey(String k, Config c) {
        int per = c.layersPerBlock + 1;
        java.util.regex.Matcher m;
        if (k.startsWith("time_embedding.linear_1.")) return "time_embed.0." + rest(k, 2);
        if (k.startsWith("time_embedding.linear_2.")) return "time_embed.2." + rest(k, 2);
        if (k.startsWith("conv_in.")) return "input_blocks.0.0." + rest(k, 1);
        if (k.startsWith("conv_norm_out.")) return "out.0." + rest(k, 1);
        if (k.startsWith("conv_out.")) return "out.2." + rest(k, 1);
        if ((m = java.util.regex.Pattern.compile("^down_blocks\\.(\\d+)\\.(resnets|attentions)\\.(\\d+)\\.(.*)$").matcher(k)).matches()) {
            int i = 1 + Integer.parseInt(m.group(1)) * per + Integer.parseInt(m.group(3));
            return m.group(2).equals("resnets") ? "input_blocks." + i + ".0." + ldmResnetKey(m.group(4)) : "input_blocks." + i + ".1." + m.group(4);
        }
        if ((m = java.util.regex.Pattern.compile("^down_blocks\\.(\\d+)\\.downsamplers\\.0\\.conv\\.(.*)$").matcher(k)).matches())
            return "input_blocks." + (1 + Integer.parseInt(m.group(1)) * per + c.layersPerBlock) + ".0.op." + m.group(2);
        if ((m = java.util.regex.Pattern.compile("^mid_block\\.(resnets|attentions)\\.(\\d)\\.(.*)$").matcher(k)).matches()) {
            if (m.group(1).equals("attentions")) return "middle_block.1." + m.group(3);
            return "middle_block." + (m.group(2).equals("0") ? "0" : "2") + "." + ldmResnetKey(m.group(3));
        }
        if ((m = java.util.regex.Pattern.compile("^up_blocks\\.(\\d+)\\.(resnets|attentions)\\.(\\d+)\\.(.*)$").matcher(k)).matches()) {
            int i = Integer.parseInt(m.group(1)) * per + Integer.parseInt(m.group(3));
            return m.group(2).equals("resnets") ? "output_blocks." + i + ".0." + ldmResnetKey(m.group(4)) : "output_blocks." + i + ".1." + m.group(4);
        }
        if ((m = java.util.regex.Pattern.compile("^up_blocks\\.(\\d+)\\.upsamplers\\.0\\.conv\\.(.*)$").matcher(k)).matches()) {
            int block = Integer.parseInt(m.group(1));
            boolean cross = c.upBlockTypes.get(block).equals("CrossAttnUpBlock2D");
            return "output_blocks." + (block * per + c.layersPerBlock) + "." + (cross ? 2 : 1) + ".conv." + m.group(2);
        }
        throw new IllegalArgumentException("no LDM name for U-Net key " + k);
    }

    private static String ldmResnetKey(String k) {
        return k.replaceFirst("^norm1\\.", "in_layers.0.").replaceFirst("^conv1\\.", "in_layers.2.")
            .replaceFirst("^time_emb_proj\\.", "emb_layers.1.").replaceFirst("^norm2\\.", "out_layers.0.")
            .replaceFirst("^conv2\\.", "out_layers.3.").replaceFirst("^conv_shortcut\\.", "skip_connection.");
    }
}
