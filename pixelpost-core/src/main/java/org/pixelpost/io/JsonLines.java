package org.pixelpost.io;

import org.pixelpost.io.check.BadFileException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** JSON-lines files: one JSON object per non-blank line; a bad line is reported by file and number. */
public final class JsonLines {
    private static final ObjectMapper JSON = new ObjectMapper();

    private JsonLines() {}

    /** The objects of {@code file}; each must have the given string fields. */
    public static List<JsonNode> read(Path file, String... requiredStrings) throws IOException {
        List<JsonNode> out = new ArrayList<>();
        int lineNo = 0;
        for (String line : Files.readAllLines(file)) {
            lineNo++;
            if (line.isBlank()) continue;
            JsonNode j;
            try {
                j = JSON.readTree(line);
            } catch (IOException e) {
                throw new BadFileException(file, "line " + lineNo + ": malformed JSON");
            }
            for (String k : requiredStrings)
                if (!j.path(k).isTextual()) throw new BadFileException(file, "line " + lineNo + ": needs string field \"" + k + "\"");
            out.add(j);
        }
        return out;
    }

    /**
     * Keeps the lines of a run's log up to {@code step} (their {@code "step"} field), as a resumed run
     * continues from its checkpoint: what the interrupted run wrote past it goes, and so does a last
     * line cut short by the interruption. A missing file is left missing.
     */
    public static void keepUpToStep(Path file, long step) throws IOException {
        if (!Files.isRegularFile(file)) return;
        ObjectMapper om = new ObjectMapper();
        List<String> keep = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            if (line.isBlank()) continue;
            try {
                if (om.readTree(line).path("step").asLong() <= step) keep.add(line);
            } catch (IOException e) {
                break; // a line cut short by the kill
            }
        }
        AtomicFiles.writeString(file, keep.isEmpty() ? "" : String.join("\n", keep) + "\n");
    }
}
