package org.pixelpost.model.text;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.ComponentFolder;
import org.pixelpost.io.ConfigJson;
import org.pixelpost.io.ConfigJson.Required;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.nn.Init;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Module;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The encoder of T5 ({@code T5EncoderModel}), in the v1.1 form PixArt-alpha conditions on: token
 * embeddings, then layers of pre-norm self-attention and feed-forward with residuals, each norm
 * T5's RMS norm (no mean, no bias); attention scores are not scaled by {@code 1/sqrt(d_kv)} and
 * get a learned bias by bucketed relative position, which the first layer holds and every layer
 * uses. The feed-forward is gated GELU ({@code wo(gelu_tanh(wi_0 x) * wi_1 x)}, v1.1) or ReLU
 * ({@code wo(relu(wi x))}, the original T5). Parameter names are transformers'.
 */
public final class T5EncoderModel extends Module {
    public static final String CLASS_NAME = "T5EncoderModel";

    /** The options of transformers' {@code T5Config} the encoder uses. */
    public record Config(@Required int vocabSize, @Required int dModel, @Required int dKv, @Required int dFf, @Required int numLayers,
                         @Required int numHeads, int relativeAttentionNumBuckets, int relativeAttentionMaxDistance, String feedForwardProj,
                         double layerNormEpsilon) {
        public Config {
            Checks.atLeast("vocab_size", vocabSize, 1);
            Checks.atLeast("d_model", dModel, 1);
            Checks.atLeast("d_kv", dKv, 1);
            Checks.atLeast("d_ff", dFf, 1);
            Checks.atLeast("num_layers", numLayers, 1);
            Checks.atLeast("num_heads", numHeads, 1);
            Checks.atLeast("relative_attention_num_buckets", relativeAttentionNumBuckets, 2);
            Checks.atLeast("relative_attention_max_distance", relativeAttentionMaxDistance, 1);
            Checks.positive("layer_norm_epsilon", layerNormEpsilon);
            if (!feedForwardProj.equals("gated-gelu") && !feedForwardProj.equals("relu"))
                throw new InvalidValueException("feed_forward_proj", "'" + feedForwardProj + "' is not built here; known: gated-gelu, relu");
        }

        /** T5 v1.1 XXL, PixArt-alpha's text encoder: 4,762,310,656 parameters in the encoder. */
        public static Config v11Xxl() {
            return new Config(32128, 4096, 64, 10240, 24, 64, 32, 128, "gated-gelu", 1e-6);
        }

        public boolean gated() {
            return feedForwardProj.equals("gated-gelu");
        }

        /** transformers' {@code config.json}; absent options are v1.1's. */
        public static Config fromJson(JsonNode j) {
            return ConfigJson.read(Config.class, j, v11Xxl());
        }

        public ObjectNode toJson() {
            ObjectNode j = ConfigJson.MAPPER.createObjectNode();
            j.putArray("architectures").add(CLASS_NAME);
            j.put("model_type", "t5");
            j.setAll(ConfigJson.write(this));
            return j.put("is_gated_act", gated()).put("dense_act_fn", gated() ? "gelu_new" : "relu");
        }

        /** The parameter count from the configuration alone (built on the meta device: nothing allocated). */
        public long parameterCount() {
            try (Init meta = Init.onMeta(); T5EncoderModel counter = new T5EncoderModel(this)) {
                return counter.parameterCount();
            }
        }
    }

    /** T5's layer norm: {@code w * x / sqrt(mean(x^2) + eps)}, in float. */
    static final class RmsNorm extends Module {
        final Tensor weight;
        final double eps;

        RmsNorm(int d, double eps) {
            this.weight = param("weight", Init.ones(d));
            this.eps = eps;
        }

        Tensor forward(Tensor x) {
            Tensor f = x.to(torch.ScalarType.Float);
            Tensor var = f.square().mean(new long[] {-1}, true, new org.bytedeco.pytorch.ScalarTypeOptional()); // [..., 1]
            return weight.mul(f.mul(torch.rsqrt(var.add(Tensors.s(eps)))).to(weight.scalar_type()));
        }
    }

    /** One layer: self-attention (layer.0) and feed-forward (layer.1), each pre-norm with a residual. */
    static final class Block extends Module {
        final RmsNorm attnNorm, ffNorm;
        final Linear q, k, v, o, wi0, wi1, wo;

        Block(Config c) {
            int inner = c.numHeads * c.dKv;
            attnNorm = add("layer.0.layer_norm", new RmsNorm(c.dModel, c.layerNormEpsilon));
            q = add("layer.0.SelfAttention.q", new Linear(c.dModel, inner, false));
            k = add("layer.0.SelfAttention.k", new Linear(c.dModel, inner, false));
            v = add("layer.0.SelfAttention.v", new Linear(c.dModel, inner, false));
            o = add("layer.0.SelfAttention.o", new Linear(inner, c.dModel, false));
            ffNorm = add("layer.1.layer_norm", new RmsNorm(c.dModel, c.layerNormEpsilon));
            if (c.gated()) {
                wi0 = add("layer.1.DenseReluDense.wi_0", new Linear(c.dModel, c.dFf, false));
                wi1 = add("layer.1.DenseReluDense.wi_1", new Linear(c.dModel, c.dFf, false));
            } else {
                wi0 = add("layer.1.DenseReluDense.wi", new Linear(c.dModel, c.dFf, false));
                wi1 = null;
            }
            wo = add("layer.1.DenseReluDense.wo", new Linear(c.dFf, c.dModel, false));
        }

        /** @param bias relative position bias plus the padding mask, {@code [B or 1, H, T, T]} */
        Tensor forward(Tensor x, Tensor bias, int heads) {
            long b = x.size(0), t = x.size(1);
            Tensor h = attnNorm.forward(x);                                                   // [B, T, d]
            Tensor qh = q.forward(h).view(b, t, heads, -1).transpose(1, 2);                   // [B, H, T, d_kv]
            Tensor kh = k.forward(h).view(b, t, heads, -1).transpose(1, 2);                   // [B, H, T, d_kv]
            Tensor vh = v.forward(h).view(b, t, heads, -1).transpose(1, 2);                   // [B, H, T, d_kv]
            Tensor scores = qh.matmul(kh.transpose(2, 3)).add(bias.to(qh.scalar_type()));    // [B, H, T, T], no 1/sqrt(d_kv)
            Tensor attn = torch.softmax(scores.to(torch.ScalarType.Float), -1).to(vh.scalar_type());
            Tensor a = attn.matmul(vh).transpose(1, 2).reshape(b, t, -1);                    // [B, T, H*d_kv]
            x = x.add(o.forward(a));                                                           // [B, T, d]
            Tensor f = ffNorm.forward(x);
            Tensor g = wi1 != null ? torch.gelu(wi0.forward(f), "tanh").mul(wi1.forward(f))  // [B, T, d_ff]
                : torch.relu(wi0.forward(f));
            return x.add(wo.forward(g));                                                       // [B, T, d]
        }
    }

    private final Config config;
    private final Tensor shared, relativeBias;
    private final List<Block> blocks = new ArrayList<>();
    private final RmsNorm finalNorm;

    public T5EncoderModel(Config c) {
        this.config = c;
        try (Scope s = Scope.open()) { // initialisation temporaries are freed here, the parameters kept
            shared = param("shared.weight", Init.normal(1.0, c.vocabSize, c.dModel));
            for (int i = 0; i < c.numLayers; i++) blocks.add(add("encoder.block." + i, new Block(c)));
            // the bias table lives in the first layer and serves every layer
            relativeBias = param("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                Init.normal(1.0, c.relativeAttentionNumBuckets, c.numHeads));
            finalNorm = add("encoder.final_layer_norm", new RmsNorm(c.dModel, c.layerNormEpsilon));
        }
    }

    public Config config() {
        return config;
    }

    /**
     * T5's bucket of each relative position {@code key - query} for the encoder (bidirectional): half
     * the buckets for each direction, exact up to a quarter of them, logarithmic out to the maximum
     * distance.
     */
    static Tensor buckets(long t, int numBuckets, int maxDistance) {
        Tensor pos = torch.arange(new Scalar(t)).to(torch.ScalarType.Long);
        Tensor rel = pos.view(1, t).sub(pos.view(t, 1));                                      // [T, T] key - query
        int half = numBuckets / 2, maxExact = half / 2;
        // integer scalars throughout: a floating one would promote the buckets to float
        Tensor out = rel.gt(new Scalar(0L)).to(torch.ScalarType.Long).mul(new Scalar((long) half)); // the direction's half
        Tensor abs = rel.abs();
        Tensor large = abs.to(torch.ScalarType.Float).div(Tensors.s(maxExact)).log()
            .div(Tensors.s(Math.log((double) maxDistance / maxExact))).mul(Tensors.s(half - maxExact))
            .to(torch.ScalarType.Long).add(new Scalar((long) maxExact));
        large = torch.clamp_max(large, new Scalar((long) (half - 1)));
        return out.add(torch.where(abs.lt(new Scalar((long) maxExact)), abs, large));       // [T, T]
    }

    /**
     * @param ids token ids {@code [B, T]} (int64)
     * @param attentionMask {@code [B, T]}, 1 (or true) on real tokens; null: every token counts
     * @return the last hidden state, after the final norm, {@code [B, T, d_model]}
     */
    public Tensor forward(Tensor ids, Tensor attentionMask) {
        ids = Tensors.follow(ids, shared).to(torch.ScalarType.Long); // the tokenizer's ids come from the CPU
        long t = ids.size(1);
        Tensor x = torch.embedding(shared, ids);                                              // [B, T, d]
        Tensor bucket = Tensors.follow(buckets(t, config.relativeAttentionNumBuckets, config.relativeAttentionMaxDistance), shared);
        Tensor bias = torch.embedding(relativeBias, bucket).permute(2, 0, 1).unsqueeze(0);   // [1, H, T, T]
        if (attentionMask != null) {
            Tensor m = Tensors.follow(attentionMask, shared).to(torch.ScalarType.Float);
            // padded keys get the float minimum, as transformers masks them (padded queries are computed too)
            Tensor neg = m.neg().add(Tensors.s(1)).mul(Tensors.s(-Float.MAX_VALUE)).view(ids.size(0), 1, 1, t); // [B, 1, 1, T]
            bias = bias.add(neg.to(bias.scalar_type()));                                      // [B, H, T, T]
        }
        for (Block blk : blocks) x = blk.forward(x, bias, config.numHeads);                  // [B, T, d]
        return finalNorm.forward(x);                                                          // [B, T, d]
    }

    /** Writes transformers' layout: {@code config.json} and {@code model.safetensors}. */
    public void save(Path dir) throws IOException {
        ComponentFolder.write(dir, "model.safetensors", parameters(), Map.of("format", "pt"), config.toJson());
    }

    /** A transformers {@code text_encoder/} folder of a T5 encoder in fp32. */
    public static T5EncoderModel load(Path dir) throws IOException {
        return load(dir, torch.ScalarType.Float);
    }

    /**
     * A transformers {@code text_encoder/} folder of a T5 encoder: {@code config.json} and its
     * weights as one file or sharded ({@code model.safetensors.index.json}, or
     * {@code pytorch_model.bin.index.json} with pickled shards), in any floating dtype on disk; the
     * model is built in {@code dtype}, so bf16 weights never pass through fp32.
     */
    public static T5EncoderModel load(Path dir, torch.ScalarType dtype) throws IOException {
        Config c = ComponentFolder.config(dir, "T5 encoder", Config::fromJson);
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            return fromState(c, Checkpoints.readFolder(dir, "model.safetensors", "pytorch_model.bin"), dir, dtype);
        }
    }

    /**
     * A model of {@code c} with the weights in {@code stored}: transformers' names, the embedding as
     * {@code shared.weight} or {@code encoder.embed_tokens.weight} (the two are tied); other keys (a
     * decoder's) are ignored.
     */
    public static T5EncoderModel fromState(Config c, Map<String, Tensor> stored, Path source) throws IOException {
        return fromState(c, stored, source, torch.ScalarType.Float);
    }

    /** As {@link #fromState(Config, Map, Path)}, the parameters in {@code dtype}. */
    public static T5EncoderModel fromState(Config c, Map<String, Tensor> stored, Path source, torch.ScalarType dtype) throws IOException {
        T5EncoderModel m;
        try (Init meta = Init.onMeta()) { // no random initialisation for weights about to be loaded
            m = new T5EncoderModel(c);
        }
        if (dtype != torch.ScalarType.Float) m.to(dtype); // still on the meta device: the weights are copied straight into dtype
        Map<String, Tensor> mine = new LinkedHashMap<>();
        for (String k : m.parameters().keySet()) {
            Tensor v = stored.get(k);
            if (v == null && k.equals("shared.weight")) v = stored.get("encoder.embed_tokens.weight");
            if (v != null) mine.put(k, v);
        }
        return loaded(m, mine, source);
    }
}
