package org.pixelpost.model.text;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.KeyLayout;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.nn.Layers.LayerNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.io.ConfigJson.Key;
import org.pixelpost.io.ConfigJson.Required;
import org.pixelpost.nn.Module;
import org.pixelpost.nn.blocks.Attention;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * CLIP's text transformer ({@code CLIPTextModel}), in transformers' key layout: token and position
 * embeddings, pre-norm layers of causal self-attention and an MLP ({@code quick_gelu} or
 * {@code gelu}), a final LayerNorm, and the pooled output at the end token.
 */
public final class ClipTextModel extends Module {
    public record Config(@Required int vocabSize, @Required int hiddenSize, @Required int intermediateSize,
                         @Required @Key("num_hidden_layers") int numLayers, @Required @Key("num_attention_heads") int numHeads,
                         @Key("max_position_embeddings") int maxPositions, String hiddenAct, double layerNormEps, int eosTokenId) {
        public Config {
            Checks.atLeast("vocab_size", vocabSize, 1);
            Checks.atLeast("hidden_size", hiddenSize, 1);
            Checks.atLeast("intermediate_size", intermediateSize, 1);
            Checks.atLeast("num_hidden_layers", numLayers, 1);
            Checks.atLeast("num_attention_heads", numHeads, 1);
            Checks.atLeast("max_position_embeddings", maxPositions, 1);
            if (hiddenSize % numHeads != 0) throw new InvalidValueException("hidden_size", hiddenSize + " is not divisible by " + numHeads + " heads");
            if (!hiddenAct.equals("quick_gelu") && !hiddenAct.equals("gelu"))
                throw new InvalidValueException("hidden_act", "'" + hiddenAct + "' is not quick_gelu or gelu");
        }

        /** ViT-L/14's text model (Stable Diffusion 1.x): 123,060,480 parameters. */
        public static Config vitL14() {
            return new Config(49408, 768, 3072, 12, 12, 77, "quick_gelu", 1e-5, 2);
        }

        /** A transformers {@code CLIPTextConfig}; the sizes are required, the rest default to ViT-L/14's. */
        public static Config fromJson(JsonNode j) {
            return org.pixelpost.io.ConfigJson.read(Config.class, j, vitL14());
        }

        public ObjectNode toJson() {
            ObjectNode j = new ObjectMapper().createObjectNode();
            j.putArray("architectures").add("CLIPTextModel");
            j.put("model_type", "clip_text_model");
            j.setAll(org.pixelpost.io.ConfigJson.write(this));
            return j;
        }

        /** The parameter count from the configuration alone (built on the meta device: nothing allocated). */
        public long parameterCount() {
            try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta(); ClipTextModel counter = new ClipTextModel(this)) {
                return counter.parameterCount();
            }
        }
    }

    /** One pre-norm layer: causal self-attention, then the MLP, each with a residual. */
    static final class Layer extends Module {
        final LayerNorm ln1, ln2;
        final Linear q, k, v, out, fc1, fc2;
        final int heads;
        final boolean quickGelu;

        Layer(Config c) {
            int d = c.hiddenSize;
            heads = c.numHeads;
            quickGelu = c.hiddenAct.equals("quick_gelu");
            k = add("self_attn.k_proj", new Linear(d, d));
            v = add("self_attn.v_proj", new Linear(d, d));
            q = add("self_attn.q_proj", new Linear(d, d));
            out = add("self_attn.out_proj", new Linear(d, d));
            ln1 = add("layer_norm1", new LayerNorm(d, c.layerNormEps, true));
            fc1 = add("mlp.fc1", new Linear(d, c.intermediateSize));
            fc2 = add("mlp.fc2", new Linear(c.intermediateSize, d));
            ln2 = add("layer_norm2", new LayerNorm(d, c.layerNormEps, true));
        }

        Tensor forward(Tensor h, Tensor mask) {
            Tensor x = ln1.forward(h);                                                        // [B, T, D]
            h = h.add(out.forward(Attention.multiHeadMasked(q.forward(x), k.forward(x), v.forward(x), heads, mask)));
            Tensor m = fc1.forward(ln2.forward(h));                                           // [B, T, F]
            m = quickGelu ? m.mul(torch.sigmoid(m.mul(Tensors.s(1.702)))) : torch.gelu(m);
            return h.add(fc2.forward(m));                                                     // [B, T, D]
        }
    }

    /** The per-layer hidden states ({@code hidden[0]} the embeddings, {@code hidden[i]} layer i's output), the final one normed, and the pooled output. */
    public record Output(List<Tensor> hidden, Tensor last, Tensor pooled) {}

    private final Config config;
    private final Tensor tokenEmbedding, positionEmbedding;
    private final List<Layer> layers = new ArrayList<>();
    private final LayerNorm finalNorm;

    public ClipTextModel(Config c) {
        this.config = c;
        try (Scope s = Scope.open()) {
            try (var g = Tensors.noGrad()) {
                tokenEmbedding = param("text_model.embeddings.token_embedding.weight", org.pixelpost.nn.Init.normal(0.02, c.vocabSize, c.hiddenSize));
                positionEmbedding = param("text_model.embeddings.position_embedding.weight", org.pixelpost.nn.Init.normal(0.01, c.maxPositions, c.hiddenSize));
            }
            for (int i = 0; i < c.numLayers; i++) layers.add(add("text_model.encoder.layers." + i, new Layer(c)));
            finalNorm = add("text_model.final_layer_norm", new LayerNorm(c.hiddenSize, c.layerNormEps, true));
        }
    }

    public Config config() {
        return config;
    }

    /**
     * @param ids token ids {@code [B, T]} (int64); @param attentionMask {@code [B, T]} (1 on real tokens) or null
     *     for none: the causal mask always applies, as in the reference
     */
    public Output forward(Tensor ids, Tensor attentionMask) {
        ids = Tensors.follow(ids, tokenEmbedding); // the tokenizer's ids come from the CPU
        if (attentionMask != null) attentionMask = Tensors.follow(attentionMask, tokenEmbedding);
        long b = ids.size(0), t = ids.size(1);
        if (t > config.maxPositions) throw new IllegalArgumentException(t + " tokens, but the model has " + config.maxPositions + " positions");
        Tensor pos = Tensors.follow(torch.arange(new Scalar(t)).to(torch.ScalarType.Long), ids);
        Tensor h = torch.embedding(tokenEmbedding, ids).add(torch.embedding(positionEmbedding, pos).unsqueeze(0)); // [B, T, D]
        Tensor causal = Tensors.follow(torch.ones(t, t).to(torch.ScalarType.Bool).tril(), ids);                  // [T, T] true where a key is visible
        Tensor mask = causal.view(1, 1, t, t);
        if (attentionMask != null) mask = mask.logical_and(attentionMask.to(torch.ScalarType.Bool).view(b, 1, 1, t)); // [B, 1, T, T]
        List<Tensor> hidden = new ArrayList<>();
        hidden.add(h);
        for (Layer l : layers) {
            h = l.forward(h, mask);
            hidden.add(h);
        }
        Tensor last = finalNorm.forward(h);                                                  // [B, T, D]
        // the pooled output sits at the end token: the highest id (SD 1.x's legacy eos id 2), or the first eos id
        Tensor at = config.eosTokenId == 2 ? ids.argmax(new org.bytedeco.pytorch.LongOptional(-1), false)
            : ids.eq(new Scalar(config.eosTokenId)).to(torch.ScalarType.Int).argmax(new org.bytedeco.pytorch.LongOptional(-1), false);
        Tensor pooled = last.index(new org.bytedeco.pytorch.TensorIndexVector(
            new org.bytedeco.pytorch.TensorIndex(Tensors.follow(torch.arange(new Scalar(b)).to(torch.ScalarType.Long), ids)),
            new org.bytedeco.pytorch.TensorIndex(at)));                                     // [B, D]
        return new Output(hidden, last, pooled);
    }

    /** The final LayerNorm alone, for hidden states taken before the last layer (clip skip). */
    public Tensor finalLayerNorm(Tensor h) {
        return finalNorm.forward(h);
    }

    public void save(Path dir) throws IOException {
        org.pixelpost.io.ComponentFolder.write(dir, "model.safetensors", parameters(), Map.of("format", "pt"), config.toJson());
    }

    /** A transformers {@code text_encoder/} folder: {@code config.json} and {@code model.safetensors} (or {@code pytorch_model.bin}). */
    public static ClipTextModel load(Path dir) throws IOException {
        Config c = org.pixelpost.io.ComponentFolder.config(dir, "CLIP text encoder", Config::fromJson);
        Path w = org.pixelpost.io.ComponentFolder.weights(dir, "model.safetensors", "pytorch_model.bin");
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            return fromState(c, Checkpoints.read(w), w);
        }
    }

    /** A model of {@code c} with the weights in {@code stored} (transformers' or SD single-file names; other keys are ignored). */
    public static ClipTextModel fromState(Config c, Map<String, Tensor> stored, Path source) throws IOException {
        ClipTextModel m;
        try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta()) { // no random initialisation for weights about to be loaded
            m = new ClipTextModel(c);
        }
        return loaded(m, KeyLayout.pick(stored, m.parameters().keySet(), layouts()), source);
    }

    /** The prefix of the text encoder in an SD 1.x single file. */
    public static final String SINGLE_FILE_PREFIX = "cond_stage_model.transformer.";

    /** transformers' names ({@code text_model.*}) or an SD single file's ({@code cond_stage_model.transformer.text_model.*}); the position-id buffer is dropped. */
    public static List<KeyLayout> layouts() {
        return List.of(
            new KeyLayout("transformers", (k, t) -> k.startsWith("text_model.") && !k.endsWith("position_ids") ? Map.entry(k, t) : null),
            new KeyLayout("sd-single-file", (k, t) -> k.startsWith(SINGLE_FILE_PREFIX) && !k.endsWith("position_ids")
                ? Map.entry(k.substring(SINGLE_FILE_PREFIX.length()), t) : null));
    }
}
