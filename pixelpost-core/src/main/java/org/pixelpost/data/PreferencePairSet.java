package org.pixelpost.data;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.JsonLines;

/** Preference pairs: {@code pairs.jsonl} with {@code {"prompt", "winner", "loser"}} per line, image paths relative to the file. */
public record PreferencePairSet(Path file, List<Pair> pairs) {
    public record Pair(String prompt, Path winner, Path loser) {}

    /** {@code path} is the pairs file or a folder holding {@code pairs.jsonl}. */
    public static PreferencePairSet load(Path path) throws IOException {
        Path f = Files.isDirectory(path) ? path.resolve("pairs.jsonl") : path;
        if (!Files.isRegularFile(f)) throw new BadFileException(f, "no such pairs file");
        List<Pair> pairs = new ArrayList<>();
        Path dir = f.toAbsolutePath().getParent();
        for (JsonNode j : JsonLines.read(f, "prompt", "winner", "loser"))
            pairs.add(new Pair(j.get("prompt").asText(), dir.resolve(j.get("winner").asText()), dir.resolve(j.get("loser").asText())));
        if (pairs.isEmpty()) throw new BadFileException(f, "holds no pairs");
        return new PreferencePairSet(f, List.copyOf(pairs));
    }
}
