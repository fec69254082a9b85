package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Gold items (an image against a degraded copy of itself) flag a careless annotator, whose votes can then be left out. */
class GoldItemsTest {
    @Test
    void aCarelessAnnotatorIsFlaggedAndCanBeExcluded(@TempDir Path dir) throws Exception {
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < 20; i++) prompts.add("prompt " + i);
        Map<String, Path> m = new LinkedHashMap<>();
        m.put("A", StudyFixtures.samples(dir.resolve("a"), prompts, 1, 0x808080));
        m.put("B", StudyFixtures.samples(dir.resolve("b"), prompts, 1, 0x404040));
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("g.db"))) {
            int n = Studies.create(store, "g", StudyStore.Kind.AB, m, null, null, 5, 11, 0.25, 0.1, dir.resolve("gold"));
            assertEquals(40 + 4 + 2 * 5, n, "40 real items, 4 of them repeated, and two gold items (flaws, appeal) for each of 5 of the 20 samples");
            // the degraded copy is the same size and visibly different
            Path degraded;
            try (var files = Files.list(dir.resolve("gold"))) {
                degraded = files.findFirst().orElseThrow();
            }
            BufferedImage d = ImageIO.read(degraded.toFile());
            assertEquals(8, d.getWidth());
            List<String> careful = new ArrayList<>();
            for (int i = 0; i < 4; i++) careful.add(store.join("careful " + i));
            String careless = store.join("careless");
            Random rnd = new Random(5);
            for (String t : careful) answerAll(store, t, it -> it.payload().has("gold") ? it.payload().get("gold").asText()
                : it.payload().get("left").get("model").asText().equals("A") ? "left" : "right");
            // the careful ones vote for A wherever it stands (consistent); the careless one always picks the right side:
            // on gold items about half wrong, and on a repeated item (sides exchanged) the other model
            answerAll(store, careless, it -> "right");
            JsonNode r = StudyResults.compute(store, "g", false, 0.7);
            JsonNode rows = r.get("quality").get("annotators");
            assertEquals(5, rows.size());
            for (JsonNode row : rows) {
                boolean isCareless = row.get("annotator").asText().equals("careless");
                assertEquals(isCareless, row.get("flagged").asBoolean(), row.toString());
                if (!isCareless) assertEquals(1.0, row.get("gold_accuracy").asDouble());
                assertEquals(4, row.get("repeats_answered").asInt());
                assertEquals(isCareless ? 0.0 : 1.0, row.get("self_consistency").asDouble(), "self-consistency over the 4 repeated comparisons: " + row);
                assertEquals(6, row.get("id").asText().length(), "a token prefix, never the whole token");
            }
            // gold items stay out of the model table; excluding the careless annotator leaves 4 votes per real item
            JsonNode flaws = r.get("pairs").get(0).get("flaws");
            assertEquals(20, flaws.get("n").asInt(), "repeated and gold items stay out of the model table");
            JsonNode excluded = StudyResults.compute(store, "g", true, 0.7);
            assertTrue(excluded.get("excluded_flagged").asBoolean());
            assertEquals(20, excluded.get("pairs").get(0).get("flaws").get("n").asInt());
            assertTrue(excluded.get("votes").asInt() > 0);
        }
    }

    static void answerAll(StudyStore store, String token, java.util.function.Function<StudyStore.Item, String> choice) throws Exception {
        for (StudyStore.Item it = store.next("g", token); it != null; it = store.next("g", token))
            assertEquals(StudyStore.VoteResult.STORED, store.vote(it.id(), token, StudyStore.JSON.createObjectNode().put("choice", choice.apply(it))));
    }
}
