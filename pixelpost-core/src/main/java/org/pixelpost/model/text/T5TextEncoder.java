package org.pixelpost.model.text;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.model.Conditioning;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * PixArt-alpha's text conditioning: T5's tokenizer and encoder. Each prompt is cut to 120 tokens
 * ({@code </s>} kept) and padded with {@code <pad>}; the features of every position are returned
 * with the mask of real tokens, which the denoiser's cross-attention applies (padded keys do not
 * count), as diffusers' PixArt pipeline passes them.
 */
public final class T5TextEncoder implements TextEncoder {
    public static final String CLASS_NAME = T5EncoderModel.CLASS_NAME;

    private final T5Tokenizer tokenizer;
    private final T5EncoderModel model;
    private final int maxLength;
    private final Set<String> warned = ConcurrentHashMap.newKeySet();

    public T5TextEncoder(T5Tokenizer tokenizer, T5EncoderModel model, int maxLength) {
        if (maxLength < 1) throw new InvalidValueException("max_sequence_length", maxLength + " must be positive");
        if (tokenizer.vocabularySize() > model.config().vocabSize())
            throw new IllegalArgumentException("the tokenizer gives ids up to " + (tokenizer.vocabularySize() - 1) + " but the encoder embeds "
                + model.config().vocabSize() + " (another model's tokenizer?)");
        this.tokenizer = tokenizer;
        this.model = model;
        this.maxLength = maxLength;
        model.freeze();
    }

    /**
     * The dtype a {@code --text-encoder-dtype} value names: {@code fp32} or {@code bf16}; fp16 is
     * refused, since T5's activations overflow its range.
     */
    public static ScalarType dtype(String option) {
        return switch (option.toLowerCase(Locale.ROOT)) {
            case "fp32", "float32" -> ScalarType.Float;
            case "bf16", "bfloat16" -> ScalarType.BFloat16;
            case "fp16", "float16", "half" -> throw new InvalidValueException("--text-encoder-dtype",
                "fp16 is refused: T5's activations overflow float16's range (inf, then NaN features); use bf16 (half fp32's memory) or fp32");
            default -> throw new InvalidValueException("--text-encoder-dtype", "'" + option + "' is not a dtype; use fp32 or bf16");
        };
    }

    /** The memory an encoder of {@code c} takes in {@code dtype}, in bytes (its weights; activations at 120 tokens are small beside them). */
    public static long weightBytes(T5EncoderModel.Config c, ScalarType dtype) {
        return c.parameterCount() * (dtype == ScalarType.Float ? 4 : 2);
    }

    /** A pipeline folder's {@code text_encoder/} (sharded or not, any stored dtype) and {@code tokenizer/}, computing in {@code dtype}. */
    public static T5TextEncoder load(Path textEncoderDir, Path tokenizerDir, ScalarType dtype) throws IOException {
        T5Tokenizer tok = T5Tokenizer.load(tokenizerDir);
        try {
            return new T5TextEncoder(tok, T5EncoderModel.load(textEncoderDir, dtype), T5Tokenizer.PIXART_MAX_LENGTH);
        } catch (IOException | RuntimeException e) {
            tok.close();
            throw e;
        }
    }

    public T5EncoderModel model() { return model; }
    public T5Tokenizer tokenizer() { return tokenizer; }
    @Override public org.pixelpost.nn.Module module() { return model; }
    @Override public String name() { return "t5-" + model.config().dModel() + "x" + model.config().numLayers(); }
    @Override public String className() { return CLASS_NAME; }
    @Override public int dim() { return model.config().dModel(); }
    @Override public int maxTokens() { return maxLength; }

    @Override
    public Conditioning encode(List<String> captions) {
        int n = captions.size();
        float[] ids = new float[n * maxLength], mask = new float[n * maxLength];
        for (int i = 0; i < n; i++) {
            T5Tokenizer.Encoded e = tokenizer.encode(captions.get(i), maxLength);
            if (e.truncated() && warned.add(captions.get(i)))
                System.err.println("warning: prompt longer than " + maxLength + " T5 tokens, truncated: \""
                    + (captions.get(i).length() > 80 ? captions.get(i).substring(0, 77) + "..." : captions.get(i)) + "\"");
            for (int j = 0; j < maxLength; j++) {
                ids[i * maxLength + j] = e.ids()[j];
                mask[i * maxLength + j] = e.mask()[j];
            }
        }
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor idT = Tensors.fromFloats(ids, n, maxLength).to(ScalarType.Long), maskT = Tensors.fromFloats(mask, n, maxLength);
            Tensor features = model.forward(idT, maskT).to(ScalarType.Float).contiguous();       // [B, 120, d]
            return Conditioning.of(s.keep(features), s.keep(maskT.to(ScalarType.Bool)));
        }
    }

    @Override
    public void close() {
        model.close();
        tokenizer.close();
    }
}
