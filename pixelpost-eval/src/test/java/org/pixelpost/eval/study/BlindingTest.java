package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Blinding: sides drawn per (annotator, item), each annotator's own item order, a pair's two questions not back to back. */
class BlindingTest {
    @Test
    void sidesAreDrawnPerAnnotatorAndItem() {
        int swapped = 0, n = 4000, differ = 0;
        for (int i = 0; i < n; i++) {
            String item = StudyStore.randomId(12);
            boolean a = EvalServer.swapped("annotator-a", item), b = EvalServer.swapped("annotator-b", item);
            if (a) swapped++;
            if (a != b) differ++;
        }
        // a fair coin: 2000 +- 4.5 sigma (sigma = sqrt(n / 4) = 31.6)
        assertEquals(n / 2.0, swapped, 4.5 * Math.sqrt(n / 4.0), "share of swapped items");
        assertEquals(n / 2.0, differ, 4.5 * Math.sqrt(n / 4.0), "two annotators see an item's sides independently");
    }

    @Test
    void eachAnnotatorMeetsTheItemsInAnOrderOfTheirOwnAndNeverAPairTwiceInARow(@TempDir Path dir) throws Exception {
        List<String> prompts = List.of("p0", "p1", "p2", "p3", "p4", "p5");
        Map<String, Path> m = new LinkedHashMap<>();
        m.put("A", StudyFixtures.samples(dir.resolve("a"), prompts, 1, 0x101010));
        m.put("B", StudyFixtures.samples(dir.resolve("b"), prompts, 1, 0x606060));
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("s.db"))) {
            assertEquals(12, Studies.create(store, "s", StudyStore.Kind.AB, m, null, null, 2, 7));
            List<List<String>> orders = new ArrayList<>();
            for (String who : List.of("x", "y")) {
                String t = store.join(who);
                List<String> seen = new ArrayList<>();
                String last = null;
                int backToBack = 0;
                for (StudyStore.Item it = store.next("s", t); it != null; it = store.next("s", t)) {
                    String pair = StudyStore.pairKey(it.payload());
                    if (pair.equals(last)) backToBack++;
                    last = pair;
                    seen.add(it.id());
                    assertEquals(StudyStore.VoteResult.STORED, store.vote(it.id(), t, StudyStore.JSON.createObjectNode().put("choice", "tie")));
                }
                assertEquals(12, seen.size());
                // only the very last item can be forced to follow its own pair
                assertTrue(backToBack <= 1, who + ": " + backToBack + " pairs answered twice in a row");
                orders.add(seen);
            }
            assertNotEquals(orders.get(0), orders.get(1), "two annotators get the items in different orders");
        }
    }
}
