package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Three models with known Bradley-Terry strengths: the study's ranking recovers their order, with intervals covering them. */
class BradleyTerryTest {
    @Test
    void theFitRecoversStrengthsFromExactCounts() {
        // 2:1 odds of A over B, 2:1 of B over C, 4:1 of A over C: strengths 2, 1, 1/2 (log 0.693, 0, -0.693)
        List<StudyResults.Outcome> o = new ArrayList<>();
        for (int i = 0; i < 2000; i++) o.add(new StudyResults.Outcome("A", "B", 0));
        for (int i = 0; i < 1000; i++) o.add(new StudyResults.Outcome("A", "B", 2));
        for (int i = 0; i < 2000; i++) o.add(new StudyResults.Outcome("B", "C", 0));
        for (int i = 0; i < 1000; i++) o.add(new StudyResults.Outcome("B", "C", 2));
        for (int i = 0; i < 4000; i++) o.add(new StudyResults.Outcome("A", "C", 0));
        for (int i = 0; i < 1000; i++) o.add(new StudyResults.Outcome("A", "C", 2));
        double[] t = StudyResults.bradleyTerry(List.of("A", "B", "C"), o);
        assertEquals(Math.log(2), t[0], 2e-3);
        assertEquals(0, t[1], 2e-3);
        assertEquals(-Math.log(2), t[2], 2e-3);
    }

    @Test
    void aStudyOfThreeModelsRanksThemWithIntervalsCoveringTheTruth(@TempDir Path dir) throws Exception {
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < 100; i++) prompts.add("prompt " + i);
        Map<String, Double> truth = Map.of("strong", 0.8, "middle", 0.0, "weak", -0.8);
        Map<String, Path> m = new LinkedHashMap<>();
        m.put("strong", StudyFixtures.samples(dir.resolve("s"), prompts, 1, 0x101010));
        m.put("middle", StudyFixtures.samples(dir.resolve("m"), prompts, 1, 0x505050));
        m.put("weak", StudyFixtures.samples(dir.resolve("w"), prompts, 1, 0x909090));
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("bt.db"))) {
            assertEquals(600, Studies.create(store, "three", StudyStore.Kind.AB, m, null, null, 1, 3));
            String t = store.join("simulated");
            for (StudyStore.Item it = store.next("three", t); it != null; it = store.next("three", t)) {
                String left = it.payload().get("left").get("model").asText(), right = it.payload().get("right").get("model").asText();
                double pLeft = 1 / (1 + Math.exp(truth.get(right) - truth.get(left)));
                // each comparison's draw depends on the comparison alone, not on the order the store serves it in
                String a = left.compareTo(right) < 0 ? left : right;
                Random rnd = new Random((it.payload().get("prompt").asText() + "|" + it.payload().get("question").asText() + "|" + a + "|"
                    + (a.equals(left) ? right : left)).hashCode());
                double u = rnd.nextDouble();
                boolean leftWins = a.equals(left) ? u < pLeft : !(u < 1 - pLeft);
                store.vote(it.id(), t, StudyStore.JSON.createObjectNode().put("choice", leftWins ? "left" : "right"));
            }
            JsonNode r = StudyResults.compute(store, "three");
            for (String q : List.of("flaws", "appeal")) {
                JsonNode ranking = r.get("bradley_terry").get(q);
                assertEquals(List.of("strong", "middle", "weak"), List.of(ranking.get(0).get("model").asText(), ranking.get(1).get("model").asText(),
                    ranking.get(2).get("model").asText()), q + ": " + ranking);
                for (JsonNode row : ranking) {
                    double want = truth.get(row.get("model").asText());
                    assertTrue(row.get("ci95_low").asDouble() <= want && want <= row.get("ci95_high").asDouble(), q + ": the interval covers " + want + ": " + row);
                }
            }
            assertEquals(600, r.get("per_prompt").size(), "one row per prompt, pair of models and question");
        }
    }
}
