package org.pixelpost.model.text;

import java.util.List;
import org.bytedeco.pytorch.Tensor;

/** A frozen text encoder giving per-token features; the empty prompt is the unconditional input. */
public interface TextEncoder extends AutoCloseable {

    String name();

    /** The class name model folders record, by which {@link TextEncoders} builds it again. */
    default String className() {
        return name();
    }

    /** The encoder's weights where they are a libtorch module (moved, converted and fingerprinted with the model); null otherwise. */
    default org.pixelpost.nn.Module module() {
        return null;
    }

    /** A digest of the weights encoding depends on (cached encodings of one model are not reused for another); "-" where there are none. */
    default String fingerprint() {
        return module() != null ? module().fingerprint() : "-";
    }

    /**
     * Frees the encoder's weights, keeping the encodings of {@code keep} (which {@link #encode} then
     * serves; other captions are refused), where the encoder is large enough to be worth it (T5).
     * Returns whether it did; the default keeps everything loaded.
     */
    default boolean unload(List<String> keep) {
        return false;
    }

    /** Feature size per token. */
    int dim();

    /** Captions longer than this many tokens are truncated. */
    int maxTokens();

    /** The captions' conditioning: per-token features {@code [B, T, dim]} (zero past each caption's end), {@code mask [B, T]} (true on real tokens), and whatever else the encoder gives. */
    org.pixelpost.model.Conditioning encode(List<String> captions);

    @Override
    void close();
}
