package org.pixelpost.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.SafeTensors;

/**
 * A component folder as diffusers and transformers write one: {@code config.json} and the weights
 * beside it. The one place that reads and writes that pair, with the errors naming the file.
 */
public final class ComponentFolder {
    private ComponentFolder() {}

    /** {@code dir/config.json}, parsed; {@code what} names the component in the errors ({@code "U-Net"}). */
    public static JsonNode config(Path dir, String what) throws IOException {
        Path cfg = dir.resolve("config.json");
        if (!Files.isRegularFile(cfg)) throw new BadFileException(dir, "no config.json: not a " + what + " folder");
        try {
            JsonNode j = ConfigJson.MAPPER.readTree(cfg.toFile());
            if (j == null || !j.isObject()) throw new BadFileException(cfg, "not a JSON object");
            return j;
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new BadFileException(cfg, "malformed JSON (" + e.getOriginalMessage() + ")");
        }
    }

    /** A config read by {@code reader}, its refusals turned into errors naming the file. */
    public static <C> C config(Path dir, String what, java.util.function.Function<JsonNode, C> reader) throws IOException {
        JsonNode j = config(dir, what);
        try {
            return reader.apply(j);
        } catch (RuntimeException e) {
            throw new BadFileException(dir.resolve("config.json"), "unusable " + what + " config (" + e.getMessage() + ")");
        }
    }

    /** The weights file of the folder: the first of {@code names} that exists. */
    public static Path weights(Path dir, String... names) throws BadFileException {
        return Checkpoints.find(dir, names);
    }

    /** Writes {@code weights} as {@code dir/weightsFile} (safetensors) and {@code config} as {@code dir/config.json}, each atomically. */
    public static void write(Path dir, String weightsFile, Map<String, Tensor> weights, Map<String, String> metadata, ObjectNode config) throws IOException {
        Files.createDirectories(dir);
        SafeTensors.write(dir.resolve(weightsFile), weights, metadata);
        AtomicFiles.writeString(dir.resolve("config.json"), ConfigJson.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(config));
    }
}
