package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;

/**
 * The contract of a folder of sampled images: {@code settings.json} says how they were made and
 * lists each image with its prompt and seed. {@code pixelpost sample} writes it; the evaluation
 * studies read it.
 */
public record SampleFolder(String model, List<String> prompts, int steps, double guidance, double eta, long seed, int numImages,
                           JsonNode scheduler, List<Image> images, double seconds) {
    /** One image: its file (relative to the folder), prompt and seed. */
    public record Image(String file, String prompt, long seed) {}

    public static final String FILE = "settings.json";

    private static final ObjectMapper JSON = new ObjectMapper()
        .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .enable(SerializationFeature.INDENT_OUTPUT)
        .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

    public String toJson() {
        try {
            return JSON.writeValueAsString(this);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Writes {@code settings.json} atomically. */
    public void write(Path dir) throws IOException {
        AtomicFiles.writeString(dir.resolve(FILE), toJson());
    }

    /** Reads a folder's {@code settings.json}; every listed image must exist. */
    public static SampleFolder read(Path dir) throws IOException {
        Path f = dir.resolve(FILE);
        if (!Files.isRegularFile(f)) throw new BadFileException(dir, "not a folder written by pixelpost sample (no " + FILE + ")");
        SampleFolder s;
        try {
            s = JSON.readValue(f.toFile(), SampleFolder.class);
        } catch (IOException e) {
            throw new BadFileException(f, "malformed " + FILE + " (" + e.getMessage() + ")");
        }
        if (s.images() == null || s.images().isEmpty()) throw new BadFileException(f, "lists no images");
        for (Image i : s.images()) {
            if (i.file() == null || i.prompt() == null) throw new BadFileException(f, "an image entry lacks its file or prompt");
            if (!Files.isRegularFile(dir.resolve(i.file()))) throw new BadFileException(dir.resolve(i.file()), "listed in " + FILE + " but missing");
        }
        return s;
    }
}
