package org.pixelpost.model.text;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import org.pixelpost.io.check.BadFileException;

/** Builds a text encoder by the class name a model folder gives. */
public final class TextEncoders {
    private TextEncoders() {}

    /** Builds an encoder from the model folder and its index entry (which may carry options such as {@code max_tokens}). */
    @FunctionalInterface
    public interface Loader {
        TextEncoder load(Path modelDir, JsonNode index) throws IOException;
    }

    /** Class name -> loader: adding a text encoder kind is one line here. */
    private static final Map<String, Loader> REGISTRY = new TreeMap<>(Map.of(
        MiniLmTextEncoder.CLASS_NAME, (dir, j) -> new MiniLmTextEncoder(j.path("max_tokens").asInt(32)),
        MiniLmTextEncoder.NAME, (dir, j) -> new MiniLmTextEncoder(j.path("max_tokens").asInt(32))));

    public static java.util.Set<String> known() {
        return REGISTRY.keySet();
    }

    public static TextEncoder load(String className, Path modelDir, JsonNode index, Path indexFile) throws IOException {
        Loader l = REGISTRY.get(className);
        if (l == null) throw new BadFileException(indexFile, "text encoder class '" + className + "' is not built here; known: " + known());
        return l.load(modelDir, index);
    }
}
