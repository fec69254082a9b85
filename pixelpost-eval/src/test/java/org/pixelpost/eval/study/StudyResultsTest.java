package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Results of constructed studies with known votes, checked against counts worked out by hand. */
class StudyResultsTest {
    @Test
    void abTableFollowsTheMajorityOfEachItem(@TempDir Path dir) throws Exception {
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("r.db"))) {
            Map<String, Path> m = new LinkedHashMap<>();
            List<String> prompts = List.of("p0", "p1", "p2", "p3");
            m.put("A", StudyFixtures.samples(dir.resolve("a"), prompts, 1, 0x000000));
            m.put("B", StudyFixtures.samples(dir.resolve("b"), prompts, 1, 0x100000));
            Studies.create(store, "s", StudyStore.Kind.AB, m, null, null, 5, 3);
            List<String> tokens = new ArrayList<>();
            for (int i = 0; i < 5; i++) tokens.add(store.join("a" + i));
            // flaws items by prompt: p0 A wins 3-2, p1 B wins 4-1, p2 tie by 2-2-1 (no majority), p3 rejected 3-2
            // appeal items: p0 tie 3 ties, p1 A wins 5-0, p2 A wins 3-1-1, p3 B wins 2-1-1-1? (2 B, 1 A, 1 tie, 1 reject: B has the most)
            Map<String, String[]> flaws = Map.of("p0", new String[] {"A", "A", "A", "B", "B"}, "p1", new String[] {"B", "B", "B", "B", "A"},
                "p2", new String[] {"A", "A", "B", "B", "tie"}, "p3", new String[] {"reject", "reject", "reject", "A", "B"});
            Map<String, String[]> appeal = Map.of("p0", new String[] {"tie", "tie", "tie", "A", "B"}, "p1", new String[] {"A", "A", "A", "A", "A"},
                "p2", new String[] {"A", "A", "A", "tie", "B"}, "p3", new String[] {"B", "B", "A", "tie", "reject"});
            // each annotator takes the items as the store gives them out (leased one at a time) and answers as planned
            for (int i = 0; i < 5; i++) {
                for (StudyStore.Item it = store.next("s", tokens.get(i)); it != null; it = store.next("s", tokens.get(i))) {
                    ObjectNode p = it.payload();
                    String v = (p.get("question").asText().equals("flaws") ? flaws : appeal).get(p.get("prompt").asText())[i];
                    String left = p.get("left").get("model").asText();
                    String choice = v.equals("A") || v.equals("B") ? (v.equals(left) ? "left" : "right") : v;
                    assertEquals(StudyStore.VoteResult.STORED, store.vote(it.id(), tokens.get(i), StudyStore.JSON.createObjectNode().put("choice", choice)));
                }
            }
            store.answers("s").values().forEach(v -> assertEquals(5, v.size()));
            JsonNode r = StudyResults.compute(store, "s");
            JsonNode row = r.get("pairs").get(0);
            assertEquals("A", row.get("model_a").asText());
            JsonNode f = row.get("flaws"), a = row.get("appeal");
            assertEquals(3, f.get("n").asInt(), "the rejected item is left out");
            assertEquals(1, f.get("a_wins").get("count").asInt());
            assertEquals(1, f.get("tie").get("count").asInt());
            assertEquals(1, f.get("b_wins").get("count").asInt());
            assertEquals(4, a.get("n").asInt());
            assertEquals(2, a.get("a_wins").get("count").asInt());
            assertEquals(1, a.get("tie").get("count").asInt());
            assertEquals(1, a.get("b_wins").get("count").asInt());
            assertEquals(0.5, a.get("a_wins").get("share").asDouble(), 1e-12);
            // Wilson 95% for 2 of 4, computed independently: 0.15004 .. 0.84996
            assertEquals(0.15004, a.get("a_wins").get("ci95_low").asDouble(), 1e-4);
            assertEquals(0.84996, a.get("a_wins").get("ci95_high").asDouble(), 1e-4);
            assertEquals(1, r.get("rejected_items").asInt());
            assertEquals(40, r.get("votes").asInt());
        }
    }

    @Test
    void majorityWilsonAndKappaByHand() {
        assertEquals("a", StudyResults.majority(List.of("a", "a", "b")));
        assertNull(StudyResults.majority(List.of("a", "b")));
        assertNull(StudyResults.majority(List.of("a", "a", "b", "b", "c")));
        assertEquals(1.0, StudyResults.fleissKappa(List.of(List.of("x", "x", "x"), List.of("y", "y", "y"))), 1e-12);
        // Fleiss' kappa worked by hand: items (x,x,y) and (x,y,y): P_i = 1/3 each, p_x = p_y = 1/2, Pe = 1/2, kappa = (1/3 - 1/2)/(1/2) = -1/3
        assertEquals(-1.0 / 3, StudyResults.fleissKappa(List.of(List.of("x", "x", "y"), List.of("x", "y", "y"))), 1e-12);
        double[] w = StudyResults.wilson(0, 10);
        assertEquals(0.0, w[0], 1e-12);
        assertEquals(0.27753, w[1], 1e-4);
    }

    @Test
    void alignmentRatesAndPairsExport(@TempDir Path dir) throws Exception {
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("r.db"))) {
            Path q = dir.resolve("q.jsonl");
            java.nio.file.Files.writeString(q, "{\"prompt\": \"cat\", \"questions\": [\"one cat?\", \"orange?\"]}\n");
            Studies.create(store, "al", StudyStore.Kind.ALIGNMENT, Map.of("M", StudyFixtures.samples(dir.resolve("m"), List.of("cat"), 2, 0)), q, null, 3, 1);
            List<String> t = List.of(store.join("x"), store.join("y"), store.join("z"));
            // image 1: q1 yes 3-0, q2 no 1-2; image 2: q1 yes 2-1, q2 yes 2-1 -> 3 of 4 yes
            boolean[][][] votes = {{{true, false}, {true, true}, {true, false}}, {{true, true}, {false, true}, {true, false}}};
            for (int k = 0; k < 3; k++)
                for (StudyStore.Item it = store.next("al", t.get(k)); it != null; it = store.next("al", t.get(k))) {
                    boolean[] v = votes[it.position()][k];
                    assertEquals(StudyStore.VoteResult.STORED, store.vote(it.id(), t.get(k),
                        StudyStore.JSON.createObjectNode().set("answers", StudyStore.JSON.createArrayNode().add(v[0]).add(v[1]))));
                }
            JsonNode r = StudyResults.compute(store, "al").get("alignment").get("M");
            assertEquals(3, r.get("yes").asInt());
            assertEquals(4, r.get("questions").asInt());
            assertEquals(0.75, r.get("rate").asDouble(), 1e-12);

            Studies.create(store, "pk", StudyStore.Kind.PAIRS, Map.of("M", StudyFixtures.samples(dir.resolve("p"), List.of("dog"), 5, 0)), null, null, 3, 1);
            StudyStore.Item item = store.answers("pk").keySet().iterator().next();
            int[][] picks = {{2, 0}, {2, 4}, {1, 4}};
            for (int k = 0; k < 3; k++) {
                assertEquals(item.id(), store.next("pk", t.get(k)).id());
                store.vote(item.id(), t.get(k), StudyStore.JSON.createObjectNode().put("best", picks[k][0]).put("worst", picks[k][1]));
            }
            JsonNode pairs = StudyResults.compute(store, "pk").get("preference_pairs");
            assertEquals(1, pairs.size());
            assertEquals(item.payload().get("images").get(2).get("file").asText(), pairs.get(0).get("winner").asText());
            assertEquals(item.payload().get("images").get(4).get("file").asText(), pairs.get(0).get("loser").asText());
            assertEquals("dog", pairs.get(0).get("prompt").asText());
        }
    }
}
