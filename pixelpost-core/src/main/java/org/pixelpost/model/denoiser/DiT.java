package org.pixelpost.model.denoiser;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.LayerNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Flops;
import org.pixelpost.io.ConfigJson.Required;
import org.pixelpost.nn.Module;
import org.pixelpost.nn.blocks.Attention;
import org.pixelpost.nn.blocks.Embeddings;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * A diffusion transformer with cross-attention to text, as PixArt-alpha builds it: patch embedding
 * with fixed 2D sin-cos positions, a timestep embedding shared by all blocks through one
 * modulation projection ("adaLN-single") plus a learned scale-shift table per block,
 * self-attention, cross-attention to projected text tokens, an MLP, and an output layer that
 * starts at zero. Parameter names follow the original checkpoints.
 */
public final class DiT extends Module implements Denoiser {
    /**
     * @param useAdditionalConditions PixArt-alpha 1024-MS's resolution and aspect-ratio embeddings,
     *     added to the timestep embedding
     * @param interpolationScale the sin-cos positions are computed on a grid this much finer
     *     (PixArt's {@code lewei_scale}: 1 at 512, 2 at 1024)
     */
    public record Config(@Required int inChannels, @Required int outChannels, @Required int sampleSize, @Required int patchSize,
                         @Required int hiddenSize, @Required int depth, @Required int numHeads, double mlpRatio, @Required int captionChannels,
                         boolean useAdditionalConditions, double interpolationScale) {
        /** Without size conditions, positions scaled as PixArt scales them for the sample size. */
        public Config(int inChannels, int outChannels, int sampleSize, int patchSize, int hiddenSize, int depth, int numHeads, double mlpRatio, int captionChannels) {
            this(inChannels, outChannels, sampleSize, patchSize, hiddenSize, depth, numHeads, mlpRatio, captionChannels, false, defaultInterpolation(sampleSize));
        }

        /** diffusers' default: {@code max(sample_size // 64, 1)}. */
        public static double defaultInterpolation(int sampleSize) {
            return Math.max(sampleSize / 64, 1);
        }

        public Config {
            Checks.positive("interpolation_scale", interpolationScale);
            if (useAdditionalConditions && hiddenSize % 3 != 0)
                throw new IllegalArgumentException("hidden size " + hiddenSize + " is not divisible by 3, as the resolution and aspect-ratio embeddings need");
            // each size by its config key
            Checks.atLeast("in_channels", inChannels, 1);
            Checks.atLeast("out_channels", outChannels, 1);
            Checks.atLeast("sample_size", sampleSize, 1);
            Checks.atLeast("patch_size", patchSize, 1);
            Checks.atLeast("hidden_size", hiddenSize, 4);
            Checks.atLeast("depth", depth, 0);
            Checks.atLeast("num_heads", numHeads, 1);
            Checks.atLeast("caption_channels", captionChannels, 1);
            Checks.positive("mlp_ratio", mlpRatio);
            if (hiddenSize % numHeads != 0) throw new IllegalArgumentException("hidden size " + hiddenSize + " is not divisible by " + numHeads + " heads");
            if (sampleSize % patchSize != 0) throw new IllegalArgumentException("sample size " + sampleSize + " is not divisible by patch " + patchSize);
            if (hiddenSize % 4 != 0) throw new IllegalArgumentException("hidden size must be divisible by 4 for 2D sin-cos positions");
            if (outChannels != inChannels && outChannels != 2 * inChannels)
                throw new IllegalArgumentException("out channels " + outChannels + " must be in channels " + inChannels + " or twice that (learned variance)");
        }

        /** Twice the input channels out: the second half is DiT's learned variance, split off in {@link DiT#forward}. */
        public boolean learnSigma() {
            return outChannels == 2 * inChannels;
        }

        /** The same layout with another width, depth and head count (for narrow test models). */
        public Config narrowed(int hidden, int layers, int heads, int sample) {
            return new Config(inChannels, outChannels, sample, patchSize, hidden, layers, heads, mlpRatio, captionChannels, useAdditionalConditions,
                sample == sampleSize ? interpolationScale : defaultInterpolation(sample));
        }

        /** The same with PixArt-alpha 1024-MS's resolution and aspect-ratio conditions on or off. */
        public Config withAdditionalConditions(boolean on) {
            return new Config(inChannels, outChannels, sampleSize, patchSize, hiddenSize, depth, numHeads, mlpRatio, captionChannels, on, interpolationScale);
        }

        /** The same model over another text encoder's token width. */
        public Config withCaptionChannels(int channels) {
            return new Config(inChannels, outChannels, sampleSize, patchSize, hiddenSize, depth, numHeads, mlpRatio, channels, useAdditionalConditions, interpolationScale);
        }

        /** The same model over another autoencoder's latent channels and size; learned variance stays as it was. */
        public Config withLatent(int channels, int size) {
            return new Config(channels, learnSigma() ? 2 * channels : channels, size, patchSize, hiddenSize, depth, numHeads, mlpRatio, captionChannels,
                useAdditionalConditions, size == sampleSize ? interpolationScale : defaultInterpolation(size));
        }

        /** Named sizes: the CPU-sized default and the published DiT sizes in PixArt's text-to-image form. */
        public static Config named(String name) {
            return switch (name.toLowerCase(java.util.Locale.ROOT)) {
                // 8x8x32 latents (TAEF2 at 64x64), MiniLM tokens: trainable on a laptop CPU
                case "tiny" -> new Config(32, 32, 8, 2, 192, 6, 6, 4.0, 384);
                case "small" -> new Config(32, 32, 8, 1, 256, 8, 8, 4.0, 384);
                // 512px SD latents (64x64x4), T5-XXL tokens (4096), learned variance (8 output channels)
                case "s/2" -> new Config(4, 8, 64, 2, 384, 12, 6, 4.0, 4096);
                case "b/2" -> new Config(4, 8, 64, 2, 768, 12, 12, 4.0, 4096);
                case "l/2" -> new Config(4, 8, 64, 2, 1024, 24, 16, 4.0, 4096);
                case "xl/2", "pixart-512" -> new Config(4, 8, 64, 2, 1152, 28, 16, 4.0, 4096);
                // PixArt-XL-2-1024-MS: 128x128 latents, positions on a grid twice as fine, resolution and aspect-ratio conditions
                case "pixart-1024" -> new Config(4, 8, 128, 2, 1152, 28, 16, 4.0, 4096, true, 2);
                default -> throw new IllegalArgumentException("unknown DiT size '" + name + "'; known: " + names());
            };
        }

        public static List<String> names() {
            return List.of("tiny", "small", "S/2", "B/2", "L/2", "XL/2", "pixart-512", "pixart-1024");
        }

        /** The parameter count this configuration builds, from the configuration alone (built on the meta device: nothing allocated). */
        public long parameterCount() {
            try (DiT counter = onMeta(this)) {
                return counter.parameterCount();
            }
        }

        /**
         * Forward FLOPs for one sample over {@code textTokens} caption tokens (see {@link Flops}):
         * patch embedding, timestep and caption embedders, each block's self-attention,
         * cross-attention and MLP, and the output layer.
         */
        public long forwardFlops(int textTokens) {
            long d = hiddenSize, n = (long) (sampleSize / patchSize) * (sampleSize / patchSize), t = textTokens, h = (long) (d * mlpRatio);
            long embed = Flops.conv(inChannels, d, patchSize, sampleSize / patchSize, sampleSize / patchSize)
                + Flops.linear(1, FREQ_DIM, d) + Flops.linear(1, d, d) + Flops.linear(1, d, 6 * d)
                + Flops.linear(t, captionChannels, d) + Flops.linear(t, d, d);
            long block = Flops.linear(n, d, 3 * d) + Flops.attention(n, n, d) + Flops.linear(n, d, d)      // self-attention
                + Flops.linear(n, d, d) + Flops.linear(t, d, 2 * d) + Flops.attention(n, t, d) + Flops.linear(n, d, d) // cross-attention
                + Flops.linear(n, d, h) + Flops.linear(n, h, d);                                           // MLP
            return embed + depth * block + Flops.linear(n, d, (long) patchSize * patchSize * outChannels);
        }

        public ObjectNode toJson() {
            ObjectNode j = new ObjectMapper().createObjectNode().put("_class_name", "DiT");
            return j.setAll(org.pixelpost.io.ConfigJson.write(this));
        }

        /** PixelPost's DiT config; {@code mlp_ratio} defaults to 4. */
        public static Config fromJson(JsonNode j) {
            if (!j.hasNonNull("interpolation_scale") && j.has("sample_size") && j.isObject()) // a config written before the key: PixArt's rule
                j = ((ObjectNode) j.deepCopy()).put("interpolation_scale", defaultInterpolation(j.get("sample_size").asInt(64)));
            return org.pixelpost.io.ConfigJson.read(Config.class, j, named("tiny"));
        }
    }

    /** Published parameter counts to compare against, by size name. */
    public static final Map<String, Long> PUBLISHED = Map.of("xl/2", 610_856_096L, "pixart-512", 610_856_096L, // PixArt-alpha XL/2 ("0.6B")
        "pixart-1024", 611_349_152L); // PixArt-XL-2-1024-MS: the same and its resolution and aspect-ratio embedders

    private final Config config;
    private final Conv2d patch;
    private final Linear tMlp0, tMlp2, tBlock, yFc1, yFc2;
    private final SizeEmbedder resolution, aspectRatio; // PixArt-alpha 1024-MS only
    private final List<Block> blocks = new ArrayList<>();
    private final FinalLayer finalLayer;
    private final Tensor pos;

    public DiT(Config c) {
        this.config = c;
        int d = c.hiddenSize;
        try (Scope s = Scope.open()) { // initialisation temporaries are freed here, the parameters kept
            patch = add("x_embedder.proj", new Conv2d(c.inChannels, d, c.patchSize, c.patchSize, 0, true));
            tMlp0 = add("t_embedder.mlp.0", new Linear(FREQ_DIM, d));
            tMlp2 = add("t_embedder.mlp.2", new Linear(d, d));
            tBlock = add("t_block.1", new Linear(d, 6L * d));
            yFc1 = add("y_embedder.y_proj.fc1", new Linear(c.captionChannels, d));
            yFc2 = add("y_embedder.y_proj.fc2", new Linear(d, d));
            resolution = c.useAdditionalConditions ? add("csize_embedder", new SizeEmbedder(d / 3)) : null;
            aspectRatio = c.useAdditionalConditions ? add("ar_embedder", new SizeEmbedder(d / 3)) : null;
            for (int i = 0; i < c.depth; i++) blocks.add(add("blocks." + i, new Block(d, c.numHeads, c.mlpRatio)));
            finalLayer = add("final_layer", new FinalLayer(d, c.patchSize, c.outChannels));
            int grid = c.sampleSize / c.patchSize;
            pos = Embeddings.sinCos2d(d, grid, grid, 1 / c.interpolationScale, 1 / c.interpolationScale);
            pos.retainReference();
            initialize();
        }
    }

    /** The parameters and the fixed positions of the model's own grid move together. */
    @Override
    public void to(org.bytedeco.pytorch.Device device) {
        super.to(device);
        if (!Tensors.isOn(pos, device))
            try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) {
                pos.put(pos.to(device, pos.scalar_type()));
            }
    }

    @Override
    public void close() {
        super.close();
        if (!pos.isNull()) pos.releaseReference();
    }

    static final int FREQ_DIM = 256;

    @Override public Module module() { return this; }
    @Override public String className() { return "DiT"; }
    @Override public ObjectNode configJson() { return config.toJson(); }
    @Override public java.util.OptionalLong forwardFlops(int textTokens) { return java.util.OptionalLong.of(config.forwardFlops(textTokens)); }
    public Config config() { return config; }

    /** Self-attention, cross-attention and MLP, each modulated by the shared timestep projection. */
    static final class Block extends Module {
        final LayerNorm norm1, norm2;
        final Linear qkv, proj, q, kv, crossProj, fc1, fc2;
        final Tensor scaleShift;
        final int heads;

        Block(int d, int heads, double mlpRatio) {
            this.heads = heads;
            norm1 = new LayerNorm(d, 1e-6, false);
            norm2 = new LayerNorm(d, 1e-6, false);
            qkv = add("attn.qkv", new Linear(d, 3L * d));
            proj = add("attn.proj", new Linear(d, d));
            q = add("cross_attn.q_linear", new Linear(d, d));
            kv = add("cross_attn.kv_linear", new Linear(d, 2L * d));
            crossProj = add("cross_attn.proj", new Linear(d, d));
            int hidden = (int) (d * mlpRatio);
            fc1 = add("mlp.fc1", new Linear(d, hidden));
            fc2 = add("mlp.fc2", new Linear(hidden, d));
            scaleShift = param("scale_shift_table", org.pixelpost.nn.Init.normal(1 / Math.sqrt(d), 6, d));
        }

        Tensor forward(Tensor x, Tensor y, Tensor mask, Tensor t6) {
            long b = x.size(0), d = x.size(2);
            TensorVector m = scaleShift.unsqueeze(0).add(t6.reshape(b, 6, d)).chunk(6, 1);
            Tensor shiftMsa = m.get(0), scaleMsa = m.get(1), gateMsa = m.get(2), shiftMlp = m.get(3), scaleMlp = m.get(4), gateMlp = m.get(5);
            x = x.add(gateMsa.mul(selfAttention(modulate(norm1.forward(x), shiftMsa, scaleMsa))));
            x = x.add(crossAttention(x, y, mask));
            Tensor h = fc2.forward(torch.gelu(fc1.forward(modulate(norm2.forward(x), shiftMlp, scaleMlp)), "tanh"));
            return x.add(gateMlp.mul(h));
        }

        Tensor selfAttention(Tensor x) {
            TensorVector qkvs = qkv.forward(x).chunk(3, 2);                                    // 3 x [B, N, d]
            return proj.forward(Attention.multiHead(qkvs.get(0), qkvs.get(1), qkvs.get(2), heads, null));
        }

        Tensor crossAttention(Tensor x, Tensor y, Tensor mask) {
            TensorVector kvs = kv.forward(y).chunk(2, 2);                                      // 2 x [B, T, d]
            return crossProj.forward(Attention.multiHead(q.forward(x), kvs.get(0), kvs.get(1), heads, mask));
        }
    }

    static final class FinalLayer extends Module {
        final LayerNorm norm;
        final Linear linear;
        final Tensor scaleShift;

        FinalLayer(int d, int p, int out) {
            norm = new LayerNorm(d, 1e-6, false);
            linear = add("linear", new Linear(d, (long) p * p * out));
            scaleShift = param("scale_shift_table", org.pixelpost.nn.Init.normal(1 / Math.sqrt(d), 2, d));
        }

        Tensor forward(Tensor x, Tensor tEmb) {
            TensorVector m = scaleShift.unsqueeze(0).add(tEmb.unsqueeze(1)).chunk(2, 1);
            return linear.forward(modulate(norm.forward(x), m.get(0), m.get(1)));
        }
    }

    /**
     * PixArt-alpha's embedding of size conditions (the 1024-MS model's resolution and aspect
     * ratio): each number gets the timestep's sinusoidal features and an MLP, and the numbers of
     * one condition are concatenated.
     */
    static final class SizeEmbedder extends Module {
        final Linear mlp0, mlp2;

        SizeEmbedder(int d) {
            mlp0 = add("mlp.0", new Linear(FREQ_DIM, d));
            mlp2 = add("mlp.2", new Linear(d, d));
        }

        /** @param s {@code [B, K]} sizes; returns {@code [B, K * d]} */
        Tensor forward(Tensor s, org.bytedeco.pytorch.global.torch.ScalarType dtype) {
            long b = s.size(0), k = s.size(1);
            Tensor freq = Embeddings.timestep(s.reshape(b * k), FREQ_DIM, true, 0).to(dtype);  // [B*K, 256]
            return mlp2.forward(torch.silu(mlp0.forward(freq))).reshape(b, -1);               // [B, K*d]
        }
    }

    /** The names under which the 1024-MS model's size conditions travel in a {@link org.pixelpost.model.Conditioning}. */
    public static final String RESOLUTION = "resolution", ASPECT_RATIO = "aspect_ratio";

    /** Every PixArt-alpha model decodes through an autoencoder that downsamples by 8 (SD's). */
    static final int PIXART_VAE_FACTOR = 8;

    /**
     * The size conditions of latents of {@code h x w}: the image's height and width in pixels
     * {@code [B, 2]} and its aspect ratio {@code height / width} {@code [B, 1]}, as diffusers'
     * PixArt pipeline passes them; a condition given in {@code cond} is used as it is.
     */
    static Tensor[] sizeConditions(org.pixelpost.model.Conditioning cond, long b, long h, long w, Tensor like) {
        Tensor res = cond.extra(RESOLUTION), ar = cond.extra(ASPECT_RATIO);
        if (res == null)
            res = Tensors.fromFloats(new float[] {h * PIXART_VAE_FACTOR, w * PIXART_VAE_FACTOR}, 1, 2).expand(b, 2);
        if (ar == null) ar = torch.full(new long[] {b, 1}, new org.bytedeco.pytorch.Scalar((double) h / w));
        return new Tensor[] {Tensors.follow(res.to(torch.ScalarType.Float), like), Tensors.follow(ar.to(torch.ScalarType.Float).reshape(b, 1), like)};
    }

    static Tensor modulate(Tensor x, Tensor shift, Tensor scale) {
        return x.mul(scale.add(Tensors.s(1))).add(shift);
    }

    @Override
    public Tensor forward(Tensor zT, Tensor t, org.pixelpost.model.Conditioning cond) {
        Tensor out = forwardWithVariance(zT, t, cond);                       // [B, c, H, W]
        // learned variance: the second half of the channels is the variance, which DDIM does not use
        return config.learnSigma() ? out.narrow(1, 0, config.inChannels) : out;              // [B, C, H, W]
    }

    /**
     * The full output {@code [B, outChannels, H, W]}, the variance half included where the model
     * learns one. Latents of other sizes than the model's (multiples of the patch) get positions on
     * the grid scaled to the model's, as PixArt does for other aspect ratios.
     */
    public Tensor forwardWithVariance(Tensor zT, Tensor t, org.pixelpost.model.Conditioning cond) {
        Tensor textTokens = cond.tokens(), textMask = cond.mask();                            // [B, T, D], [B, T]
        long b = zT.size(0);
        int p = config.patchSize, c = config.outChannels;
        long h = zT.size(2) / p, w = zT.size(3) / p;
        if (h * p != zT.size(2) || w * p != zT.size(3))
            throw new IllegalArgumentException("latent " + Tensors.describe(zT) + " is not a multiple of the patch size " + p);
        Tensor grid = h * p == config.sampleSize && w * p == config.sampleSize ? pos : Tensors.follow(positions((int) h, (int) w), zT);
        Tensor tt = t.dim() == 0 || t.size(0) == 1 ? t.reshape(1).expand(b) : t;                 // [B]
        Tensor x = patch.forward(zT).flatten(2, 3).transpose(1, 2).add(grid.to(zT.scalar_type())); // [B, N, d]
        Tensor tFreq = Embeddings.timestep(tt, FREQ_DIM, true, 0).to(zT.scalar_type());      // [B, 256]
        Tensor tEmb = tMlp2.forward(torch.silu(tMlp0.forward(tFreq)));                       // [B, d]
        if (resolution != null) {
            Tensor[] sc = sizeConditions(cond, b, zT.size(2), zT.size(3), zT);                 // [B, 2], [B, 1]
            Tensor sizes = torch.cat(new TensorVector(resolution.forward(sc[0], zT.scalar_type()),  // [B, 2d/3]
                aspectRatio.forward(sc[1], zT.scalar_type())), 1);                             // [B, d/3]
            tEmb = tEmb.add(sizes);                                                           // [B, d]
        }
        Tensor t6 = tBlock.forward(torch.silu(tEmb));                                        // [B, 6d]
        Tensor y = yFc2.forward(torch.gelu(yFc1.forward(textTokens), "tanh"));               // [B, T, d]
        for (Block blk : blocks) x = checkpoint(in -> blk.forward(in[0], in[1], in[2], in[3]), x, y, textMask, t6); // [B, N, d]
        x = finalLayer.forward(x, tEmb);                                                     // [B, N, p*p*c]
        return x.reshape(b, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * p, w * p); // [B, c, H, W]
    }

    /** 2D sin-cos positions of an {@code h x w} patch grid, scaled to the model's grid (PixArt's base size and interpolation scale). */
    private Tensor positions(int h, int w) {
        int base = config.sampleSize / config.patchSize;
        double interpolation = config.interpolationScale;
        return Embeddings.sinCos2d(config.hiddenSize, h, w, base / (double) h / interpolation, base / (double) w / interpolation);
    }

    /** PixArt's initialisation: Xavier linears, N(0, 0.02) embedders, zero cross-attention output and final layer. */
    private void initialize() {
        if (org.pixelpost.nn.Init.meta()) return; // shapes only: the weights come from a file
        try (var g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : parameters().entrySet()) {
                String k = e.getKey();
                Tensor p = e.getValue();
                if (k.endsWith(".bias")) p.zero_();
                else if (k.endsWith(".weight") && p.dim() >= 2) {
                    long fanOut = p.size(0), fanIn = p.numel() / fanOut;
                    double bound = Math.sqrt(6.0 / (fanIn + fanOut));
                    p.copy_(torch.rand(Tensors.shape(p)).mul(Tensors.s(2 * bound)).sub(Tensors.s(bound)));
                }
            }
            List<Linear> embedders = new ArrayList<>(List.of(tMlp0, tMlp2, tBlock, yFc1, yFc2));
            if (resolution != null) embedders.addAll(List.of(resolution.mlp0, resolution.mlp2, aspectRatio.mlp0, aspectRatio.mlp2));
            for (Linear l : embedders) l.weight.copy_(torch.randn(Tensors.shape(l.weight)).mul(Tensors.s(0.02)));
            for (Block b : blocks) {
                b.crossProj.weight.zero_();
                b.crossProj.bias.zero_();
            }
            finalLayer.linear.weight.zero_();
            finalLayer.linear.bias.zero_();
        }
    }

    /** Writes {@code config.json} and {@code model.safetensors} into {@code dir}. */
    @Override
    public void save(Path dir) throws IOException {
        org.pixelpost.io.ComponentFolder.write(dir, "model.safetensors", parameters(), Map.of("format", "pt", "model", "DiT"), config.toJson());
    }

    /** A DiT of {@code c} on the meta device: shapes without memory, for counting or for loading into. */
    private static DiT onMeta(Config c) {
        try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta()) {
            return new DiT(c);
        }
    }

    public static DiT load(Path dir) throws IOException {
        JsonNode raw = org.pixelpost.io.ComponentFolder.config(dir, "DiT");
        if (isPixArtConfig(raw)) return loadPixArt(dir, raw);
        Config c = org.pixelpost.io.ComponentFolder.config(dir, "DiT", Config::fromJson);
        Path w = dir.resolve("model.safetensors");
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            Map<String, Tensor> stored = Checkpoints.read(Files.isRegularFile(w) ? w : dir.resolve("model.pth"));
            return loaded(onMeta(c), stored, w);
        }
    }

    /** diffusers' class for PixArt-alpha's transformer. */
    public static final String PIXART_CLASS = "PixArtTransformer2DModel";

    /** diffusers' PixArt transformer config: its own class, or the older {@code Transformer2DModel} with adaLN-single. */
    public static boolean isPixArtConfig(JsonNode j) {
        String cls = j.path("_class_name").asText();
        return PIXART_CLASS.equals(cls) || "Transformer2DModel".equals(cls) && "ada_norm_single".equals(j.path("norm_type").asText());
    }

    /**
     * A diffusers {@code PixArtTransformer2DModel} folder (or an older {@code Transformer2DModel}
     * one with {@code norm_type: ada_norm_single}), mapped onto this layout: its separate q/k/v
     * projections are concatenated into {@code attn.qkv} and {@code cross_attn.kv_linear}. The
     * weights may be sharded; weights of a 1024-MS model under a 512 config, or the reverse, are
     * refused.
     */
    public static DiT loadPixArt(Path dir, JsonNode j) throws IOException {
        Path cfg = dir.resolve("config.json");
        Config c;
        try {
            c = pixArtConfig(j);
        } catch (RuntimeException e) {
            throw new BadFileException(cfg, "unusable PixArt config (" + e.getMessage() + ")");
        }
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            Map<String, Tensor> stored = Checkpoints.readFolder(dir, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin");
            boolean hasSizes = stored.containsKey("adaln_single.emb.resolution_embedder.linear_1.weight");
            if (hasSizes != c.useAdditionalConditions)
                throw new BadFileException(dir, hasSizes
                    ? "the weights are a 1024-MS model's (adaln_single.emb.resolution_embedder.*), but config.json says use_additional_conditions false (a 512 model)"
                    : "config.json says use_additional_conditions true (a 1024-MS model), but the weights have no resolution and aspect-ratio embedders (a 512 model's)");
            return loaded(onMeta(c), fromPixArtKeys(stored, c.depth()), dir);
        }
    }

    /** The configuration a diffusers PixArt {@code config.json} describes. */
    public static Config pixArtConfig(JsonNode j) {
        if (!j.path("norm_type").asText("ada_norm_single").equals("ada_norm_single"))
            throw new org.pixelpost.io.check.InvalidValueException("norm_type", "'" + j.get("norm_type").asText() + "' is not ada_norm_single");
        int heads = (int) Checks.integer("num_attention_heads", j.get("num_attention_heads"), 1);
        int hidden = heads * (int) Checks.integer("attention_head_dim", j.get("attention_head_dim"), 1);
        int in = (int) Checks.integer("in_channels", j.get("in_channels"), 1);
        int out = j.hasNonNull("out_channels") ? (int) Checks.integer("out_channels", j.get("out_channels"), 1) : in;
        int sample = (int) Checks.integer("sample_size", j.get("sample_size"), 1);
        // diffusers' rules where the keys are null: conditions at sample size 128, positions scaled by sample_size // 64
        boolean sizes = j.hasNonNull("use_additional_conditions") ? j.get("use_additional_conditions").asBoolean() : sample == 128;
        double interpolation = j.hasNonNull("interpolation_scale") ? j.get("interpolation_scale").asDouble() : Config.defaultInterpolation(sample);
        return new Config(in, out, sample, (int) Checks.integer("patch_size", j.get("patch_size"), 1),
            hidden, (int) Checks.integer("num_layers", j.get("num_layers"), 1), heads, 4.0,
            (int) Checks.integer("caption_channels", j.get("caption_channels"), 1), sizes, interpolation);
    }

    /** diffusers' {@code config.json} of this model as a {@code PixArtTransformer2DModel}. */
    public ObjectNode pixArtConfigJson() {
        ObjectNode j = new ObjectMapper().createObjectNode().put("_class_name", PIXART_CLASS).put("_diffusers_version", "0.30.3")
            .put("activation_fn", "gelu-approximate").put("attention_bias", true).put("attention_head_dim", config.hiddenSize / config.numHeads)
            .put("attention_type", "default").put("caption_channels", config.captionChannels).put("cross_attention_dim", config.hiddenSize)
            .put("dropout", 0.0).put("in_channels", config.inChannels).put("interpolation_scale", config.interpolationScale)
            .put("norm_elementwise_affine", false).put("norm_eps", 1e-6).put("norm_num_groups", 32).put("norm_type", "ada_norm_single")
            .put("num_attention_heads", config.numHeads).put("num_embeds_ada_norm", 1000).put("num_layers", config.depth)
            .put("out_channels", config.outChannels).put("patch_size", config.patchSize).put("sample_size", config.sampleSize)
            .put("upcast_attention", false).put("use_additional_conditions", config.useAdditionalConditions);
        return j;
    }

    /** Writes diffusers' {@code transformer/} folder: {@code config.json} and {@code diffusion_pytorch_model.safetensors}. */
    public void savePixArt(Path dir) throws IOException {
        if (config.mlpRatio != 4.0) throw new IllegalArgumentException("mlp ratio " + config.mlpRatio + " has no diffusers PixArt form (4 only)");
        try (Scope s = Scope.open()) { // the split q/k/v views are freed once written
            org.pixelpost.io.ComponentFolder.write(dir, "diffusion_pytorch_model.safetensors", toPixArtKeys(parameters(), config.depth), Map.of("format", "pt"), pixArtConfigJson());
        }
    }

    /** The diffusers PixArt names of the parameters (the inverse of {@link #fromPixArtKeys}). */
    static Map<String, Tensor> toPixArtKeys(Map<String, Tensor> mine, int depth) {
        Map<String, Tensor> o = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : PIXART_NAMES.entrySet())
            for (String sfx : List.of(".weight", ".bias")) if (mine.containsKey(e.getValue() + sfx)) o.put(e.getKey() + sfx, mine.get(e.getValue() + sfx));
        for (int i = 0; i < depth; i++) {
            String f = "transformer_blocks." + i + ".", t = "blocks." + i + ".";
            for (String sfx : List.of(".weight", ".bias")) {
                TensorVector qkv = mine.get(t + "attn.qkv" + sfx).chunk(3, 0), kv = mine.get(t + "cross_attn.kv_linear" + sfx).chunk(2, 0);
                o.put(f + "attn1.to_q" + sfx, qkv.get(0));
                o.put(f + "attn1.to_k" + sfx, qkv.get(1));
                o.put(f + "attn1.to_v" + sfx, qkv.get(2));
                o.put(f + "attn2.to_k" + sfx, kv.get(0));
                o.put(f + "attn2.to_v" + sfx, kv.get(1));
                for (Map.Entry<String, String> e : BLOCK_NAMES.entrySet()) o.put(f + e.getKey() + sfx, mine.get(t + e.getValue() + sfx));
            }
            o.put(f + "scale_shift_table", mine.get(t + "scale_shift_table"));
        }
        o.put("scale_shift_table", mine.get("final_layer.scale_shift_table"));
        for (String sfx : List.of(".weight", ".bias")) o.put("proj_out" + sfx, mine.get("final_layer.linear" + sfx));
        return o;
    }

    /** diffusers' names -> the original ones, outside the blocks. */
    private static final Map<String, String> PIXART_NAMES = orderedMap(
        "pos_embed.proj", "x_embedder.proj",
        "adaln_single.emb.timestep_embedder.linear_1", "t_embedder.mlp.0",
        "adaln_single.emb.timestep_embedder.linear_2", "t_embedder.mlp.2",
        "adaln_single.emb.resolution_embedder.linear_1", "csize_embedder.mlp.0",
        "adaln_single.emb.resolution_embedder.linear_2", "csize_embedder.mlp.2",
        "adaln_single.emb.aspect_ratio_embedder.linear_1", "ar_embedder.mlp.0",
        "adaln_single.emb.aspect_ratio_embedder.linear_2", "ar_embedder.mlp.2",
        "adaln_single.linear", "t_block.1",
        "caption_projection.linear_1", "y_embedder.y_proj.fc1",
        "caption_projection.linear_2", "y_embedder.y_proj.fc2");

    /** diffusers' names -> the original ones, inside a block (the fused q/k/v aside). */
    private static final Map<String, String> BLOCK_NAMES = orderedMap(
        "attn1.to_out.0", "attn.proj", "attn2.to_q", "cross_attn.q_linear", "attn2.to_out.0", "cross_attn.proj",
        "ff.net.0.proj", "mlp.fc1", "ff.net.2", "mlp.fc2");

    private static Map<String, String> orderedMap(String... kv) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return java.util.Collections.unmodifiableMap(m);
    }

    /** diffusers' PixArt name of each of this layout's layers (the fused q/k/v as its parts). */
    @Override
    public List<PublishedPart> publishedLayers(String path) {
        long d = config.hiddenSize;
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("blocks\\.(\\d+)\\.(.+)").matcher(path);
        if (m.matches()) {
            String f = "transformer_blocks." + m.group(1) + ".";
            switch (m.group(2)) {
                case "attn.qkv" -> { return List.of(new PublishedPart(f + "attn1.to_q", 0, d), new PublishedPart(f + "attn1.to_k", d, d), new PublishedPart(f + "attn1.to_v", 2 * d, d)); }
                case "cross_attn.kv_linear" -> { return List.of(new PublishedPart(f + "attn2.to_k", 0, d), new PublishedPart(f + "attn2.to_v", d, d)); }
                default -> {
                    for (Map.Entry<String, String> e : BLOCK_NAMES.entrySet())
                        if (e.getValue().equals(m.group(2))) return List.of(new PublishedPart(f + e.getKey(), 0, rowsOf(path)));
                    return List.of();
                }
            }
        }
        if (path.equals("final_layer.linear")) return List.of(new PublishedPart("proj_out", 0, rowsOf(path)));
        for (Map.Entry<String, String> e : PIXART_NAMES.entrySet())
            if (e.getValue().equals(path)) return List.of(new PublishedPart(e.getKey(), 0, rowsOf(path)));
        return List.of();
    }

    private long rowsOf(String path) {
        Tensor w = parameters().get(path + ".weight");
        return w == null ? 0 : w.size(0);
    }

    /** The original name of a diffusers PixArt layer path (no {@code .weight}); null for the split q/k/v, which the original fuses. */
    public static String originalLayer(String diffusers) {
        if (PIXART_NAMES.containsKey(diffusers)) return PIXART_NAMES.get(diffusers);
        if (diffusers.equals("proj_out")) return "final_layer.linear";
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("transformer_blocks\\.(\\d+)\\.(.+)").matcher(diffusers);
        if (!m.matches()) return null;
        String inner = BLOCK_NAMES.get(m.group(2));
        return inner == null ? null : "blocks." + m.group(1) + "." + inner;
    }

    /** diffusers' PixArt names to the original ones (which this class uses). */
    static Map<String, Tensor> fromPixArtKeys(Map<String, Tensor> d, int depth) {
        Map<String, Tensor> o = new LinkedHashMap<>();
        java.util.function.BiConsumer<String, String> same = (from, to) -> {
            for (String sfx : List.of(".weight", ".bias")) if (d.containsKey(from + sfx)) o.put(to + sfx, d.get(from + sfx));
        };
        PIXART_NAMES.forEach(same);
        for (int i = 0; i < depth; i++) {
            String f = "transformer_blocks." + i + ".", t = "blocks." + i + ".";
            for (String sfx : List.of(".weight", ".bias")) {
                o.put(t + "attn.qkv" + sfx, cat(d, f + "attn1.to_q" + sfx, f + "attn1.to_k" + sfx, f + "attn1.to_v" + sfx));
                o.put(t + "cross_attn.kv_linear" + sfx, cat(d, f + "attn2.to_k" + sfx, f + "attn2.to_v" + sfx));
            }
            BLOCK_NAMES.forEach((from, to) -> same.accept(f + from, t + to));
            if (d.containsKey(f + "scale_shift_table")) o.put(t + "scale_shift_table", d.get(f + "scale_shift_table"));
        }
        if (d.containsKey("scale_shift_table")) o.put("final_layer.scale_shift_table", d.get("scale_shift_table"));
        same.accept("proj_out", "final_layer.linear");
        o.values().removeIf(java.util.Objects::isNull); // a part the file lacks is reported as missing by load
        return o;
    }

    // ---- PixArt-alpha's original checkpoints (PixArt-XL-2-512x512.pth, PixArt-XL-2-1024-MS.pth) ----

    /** Tensors of the original files that are not parameters: the fixed positions and the learned empty caption (diffusers drops both). */
    static final List<String> ORIGINAL_BUFFERS = List.of("pos_embed", "y_embedder.y_embedding");

    /** Whether the keys are an original PixArt-alpha checkpoint's. */
    public static boolean isOriginalPixArt(java.util.Collection<String> keys) {
        return keys.contains("x_embedder.proj.weight") && keys.contains("y_embedder.y_proj.fc1.weight") && keys.contains("t_block.1.weight");
    }

    /** Head counts of the published DiT widths (the shapes do not fix them). */
    private static final Map<Long, Integer> HEADS = Map.of(384L, 6, 768L, 12, 1024L, 16, 1152L, 16);

    /**
     * The configuration of an original checkpoint from its shapes: widths, depth, patch, channels,
     * the 1024-MS conditions (by their embedders) and the sample size (by {@code pos_embed}, else 64,
     * or 128 with conditions). The head count is the published one for the width, or
     * {@code numHeads} (from {@code pixelpost.num_heads} metadata or a config) where given.
     */
    public static Config originalConfig(Map<String, long[]> s, Path source, Integer numHeads) throws BadFileException {
        if (!isOriginalPixArt(s.keySet())) {
            String looks = s.containsKey("model.diffusion_model.input_blocks.0.0.weight") ? "a Stable Diffusion checkpoint"
                : s.containsKey("transformer_blocks.0.attn1.to_q.weight") ? "diffusers' PixArt names, which need their config.json (pass the transformer/ folder)"
                : s.containsKey("y_embedder.embedding_table.weight") ? "a class-conditional DiT (ImageNet labels, y_embedder.embedding_table)"
                : "keys like " + s.keySet().stream().limit(3).toList();
            throw new BadFileException(source, "not a PixArt-alpha checkpoint (no x_embedder / y_embedder.y_proj / t_block weights): " + looks);
        }
        long[] x = s.get("x_embedder.proj.weight"), y = s.get("y_embedder.y_proj.fc1.weight"), fl = s.get("final_layer.linear.weight");
        int depth = 0;
        while (s.containsKey("blocks." + depth + ".attn.qkv.weight")) depth++;
        long d = x[0];
        int patch = (int) x[2];
        boolean sizes = s.containsKey("csize_embedder.mlp.0.weight");
        Integer heads = numHeads != null ? numHeads : HEADS.get(d);
        if (heads == null)
            throw new BadFileException(source, "hidden size " + d + " is not a published PixArt width, so its head count is unknown; pass a config (--configs with transformer/config.json)");
        int out = fl == null ? (int) x[1] : (int) (fl[0] / ((long) patch * patch));
        long[] pe = s.get("pos_embed");
        int sample = pe != null && pe.length == 3 ? (int) Math.round(Math.sqrt(pe[1])) * patch : sizes ? 128 : 64;
        long hidden = s.containsKey("blocks.0.mlp.fc1.weight") ? s.get("blocks.0.mlp.fc1.weight")[0] : 4 * d;
        return new Config((int) x[1], out, sample, patch, (int) d, depth, heads, hidden / (double) d, (int) y[1], sizes,
            sizes ? 2 : Config.defaultInterpolation(sample));
    }

    /**
     * A model of {@code c} from an original checkpoint's tensors; its fixed positions and learned
     * empty caption are left out (as diffusers leaves them), and a 1024-MS file under a 512 config
     * (or the reverse) is refused.
     */
    public static DiT fromOriginal(Config c, Map<String, Tensor> state, Path source) throws BadFileException {
        boolean hasSizes = state.containsKey("csize_embedder.mlp.0.weight");
        if (hasSizes != c.useAdditionalConditions)
            throw new BadFileException(source, hasSizes
                ? "a 1024-MS checkpoint (resolution and aspect-ratio embedders csize_embedder.*, ar_embedder.*), but the config given is a 512 model's (use_additional_conditions false)"
                : "a 512 checkpoint (no resolution and aspect-ratio embedders), but the config given is a 1024-MS model's (use_additional_conditions true)");
        Map<String, Tensor> params = new LinkedHashMap<>(state);
        ORIGINAL_BUFFERS.forEach(params::remove);
        return loaded(onMeta(c), params, source);
    }

    /** The tensors of an original checkpoint: the parameters under their own names and the fixed positions {@code pos_embed [1, N, d]}. */
    public Map<String, Tensor> originalState() {
        Map<String, Tensor> o = new LinkedHashMap<>(parameters());
        o.put("pos_embed", pos.reshape(1, -1, config.hiddenSize).to(torch.ScalarType.Float).contiguous());
        return o;
    }

    private static Tensor cat(Map<String, Tensor> d, String... keys) {
        List<Tensor> parts = new ArrayList<>();
        for (String k : keys) {
            Tensor t = d.get(k);
            if (t == null) return null;
            parts.add(t);
        }
        return torch.cat(new TensorVector(parts.toArray(new Tensor[0])), 0);
    }

    /** Copies of the parameters, e.g. for a frozen reference model. */
    public Map<String, Tensor> snapshot() {
        Map<String, Tensor> s = new LinkedHashMap<>();
        parameters().forEach((k, v) -> s.put(k, v.detach().clone()));
        return s;
    }
}
