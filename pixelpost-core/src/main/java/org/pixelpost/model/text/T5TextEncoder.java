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
    private final T5EncoderModel.Config config;
    private T5EncoderModel model;
    private final int maxLength;
    /** The folder the weights were read from (null: built in memory), for writing them again once unloaded. */
    private Path source;
    private String fingerprint;
    /** After {@link #unload}: the captions kept and their rows of {@link #kept}. */
    private java.util.Map<String, Integer> keptRows;
    private Conditioning kept;
    private final Set<String> warned = ConcurrentHashMap.newKeySet();

    public T5TextEncoder(T5Tokenizer tokenizer, T5EncoderModel model, int maxLength) {
        if (maxLength < 1) throw new InvalidValueException("max_sequence_length", maxLength + " must be positive");
        if (tokenizer.vocabularySize() > model.config().vocabSize())
            throw new IllegalArgumentException("the tokenizer gives ids up to " + (tokenizer.vocabularySize() - 1) + " but the encoder embeds "
                + model.config().vocabSize() + " (another model's tokenizer?)");
        this.tokenizer = tokenizer;
        this.model = model;
        this.config = model.config();
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
        T5EncoderModel model = null;
        try {
            model = T5EncoderModel.load(textEncoderDir, dtype);
            T5TextEncoder te = new T5TextEncoder(tok, model, T5Tokenizer.PIXART_MAX_LENGTH);
            te.source = textEncoderDir;
            return te;
        } catch (IOException | RuntimeException e) {
            tok.close();
            if (model != null) model.close();
            throw e;
        }
    }

    /** The encoder's weights; null once {@link #unload unloaded}. */
    public T5EncoderModel model() { return model; }
    public T5Tokenizer tokenizer() { return tokenizer; }
    public T5EncoderModel.Config config() { return config; }
    @Override public org.pixelpost.nn.Module module() { return model; }
    @Override public String name() { return "t5-" + config.dModel() + "x" + config.numLayers(); }
    @Override public String className() { return CLASS_NAME; }
    @Override public int dim() { return config.dModel(); }
    @Override public int maxTokens() { return maxLength; }

    @Override
    public String fingerprint() {
        return model != null ? model.fingerprint() : fingerprint;
    }

    /** Encodes {@code keep} (and the empty prompt), then frees the T5 weights: training reads its text from the encoded cache. */
    @Override
    public boolean unload(List<String> keep) {
        if (model == null) return true;
        List<String> all = new java.util.ArrayList<>(new java.util.LinkedHashSet<>(keep));
        if (!all.contains("")) all.add("");
        Conditioning c;
        try (Scope sc = Scope.open()) { // 32 captions at a time, so that a long caption list does not hold every activation at once
            List<Tensor> tokens = new java.util.ArrayList<>(), masks = new java.util.ArrayList<>();
            for (int i = 0; i < all.size(); i += 32) {
                Conditioning part = encode(all.subList(i, Math.min(all.size(), i + 32)));
                tokens.add(part.tokens());
                masks.add(part.mask());
            }
            // every part is padded to the same 120 tokens: one concatenation at the end
            c = new Conditioning(sc.keep(org.bytedeco.pytorch.global.torch.cat(new org.bytedeco.pytorch.TensorVector(tokens.toArray(new Tensor[0])), 0)),
                sc.keep(org.bytedeco.pytorch.global.torch.cat(new org.bytedeco.pytorch.TensorVector(masks.toArray(new Tensor[0])), 0)), null, java.util.Map.of());
        }
        keptRows = new java.util.HashMap<>();
        for (int i = 0; i < all.size(); i++) keptRows.put(all.get(i), i);
        kept = c;
        c.tokens().retainReference(); // held past any scope the caller is in, until close
        c.mask().retainReference();
        fingerprint = model.fingerprint();
        model.close();
        model = null;
        return true;
    }

    /** Writes transformers' {@code text_encoder/} folder: the weights, or once unloaded, the files they were read from. */
    public void save(Path dir) throws IOException {
        if (model != null) {
            model.save(dir);
            return;
        }
        if (source == null) throw new IllegalStateException("the T5 encoder was unloaded and has no folder to copy");
        java.nio.file.Files.createDirectories(dir);
        try (var files = java.nio.file.Files.list(source)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (java.nio.file.Files.isRegularFile(f))
                    org.pixelpost.io.AtomicFiles.write(dir.resolve(f.getFileName()), tmp -> java.nio.file.Files.copy(f, tmp, java.nio.file.StandardCopyOption.REPLACE_EXISTING));
            }
        }
    }

    @Override
    public Conditioning encode(List<String> captions) {
        if (model == null) {
            float[] rows = new float[captions.size()];
            for (int i = 0; i < rows.length; i++) {
                Integer r = keptRows.get(captions.get(i));
                if (r == null) throw new IllegalStateException("the T5 encoder was unloaded for training; \"" + captions.get(i) + "\" was not encoded before");
                rows[i] = r;
            }
            try (Scope s = Scope.open()) {
                Tensor index = Tensors.fromFloats(rows, rows.length).to(ScalarType.Long);
                Conditioning c = kept.map(t -> t.index_select(0, Tensors.follow(index, t))); // the index on each tensor's device
                return new Conditioning(s.keep(c.tokens()), s.keep(c.mask()), null, java.util.Map.of());
            }
        }
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
        if (model != null) model.close();
        model = null;
        if (kept != null) {
            kept.tokens().releaseReference();
            kept.mask().releaseReference();
            kept = null;
        }
        tokenizer.close();
    }
}
