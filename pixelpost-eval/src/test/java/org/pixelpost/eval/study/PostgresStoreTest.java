package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same schema and behaviour on PostgreSQL. Runs where {@code PIXELPOST_TEST_PG} holds a JDBC
 * URL of a scratch database (CI starts a server and sets it).
 */
class PostgresStoreTest {
    @Test
    void votesResultsAndRestartOnPostgres(@TempDir Path dir) throws Exception {
        String url = System.getenv("PIXELPOST_TEST_PG");
        if (url == null && System.getenv("CI") != null) fail("CI must start PostgreSQL and set PIXELPOST_TEST_PG");
        Assumptions.assumeTrue(url != null, "no PostgreSQL (PIXELPOST_TEST_PG unset)");
        try (Connection c = DriverManager.getConnection(url); Statement s = c.createStatement()) {
            for (String t : List.of("votes", "items", "annotators", "images", "studies")) s.execute("DROP TABLE IF EXISTS " + t + " CASCADE");
        }
        Map<String, Path> m = new LinkedHashMap<>();
        m.put("A", StudyFixtures.samples(dir.resolve("a"), List.of("p0", "p1"), 1, 0));
        m.put("B", StudyFixtures.samples(dir.resolve("b"), List.of("p0", "p1"), 1, 0x303030));
        String t1, t2;
        try (StudyStore store = new StudyStore(url)) {
            assertEquals(4, Studies.create(store, "pg", StudyStore.Kind.AB, m, null, null, 2, 1));
            assertThrows(IllegalArgumentException.class, () -> Studies.create(store, "pg", StudyStore.Kind.AB, m, null, null, 2, 1));
            t1 = store.join("one");
            t2 = store.join("two");
            StudyStore.Item it = store.next("pg", t1);
            assertEquals(StudyStore.VoteResult.STORED, store.vote(it.id(), t1, StudyStore.JSON.createObjectNode().put("choice", "left")));
            assertEquals(StudyStore.VoteResult.DUPLICATE, store.vote(it.id(), t1, StudyStore.JSON.createObjectNode().put("choice", "right")));
            assertEquals(StudyStore.VoteResult.UNKNOWN_ITEM, store.vote("nope", t1, StudyStore.JSON.createObjectNode().put("choice", "left")));
            // the least-filled items are served first; a vote counts only on an item given to the voter
            assertEquals(StudyStore.VoteResult.NOT_LEASED, store.vote(it.id(), t2, StudyStore.JSON.createObjectNode().put("choice", "left")));
            StudyStore.Item other = store.next("pg", t2);
            assertNotEquals(it.id(), other.id());
            assertEquals(StudyStore.VoteResult.STORED, store.vote(other.id(), t2, StudyStore.JSON.createObjectNode().put("choice", "left")));
        }
        try (StudyStore store = new StudyStore(url)) { // reopened: nothing lost
            assertEquals(2, store.voteCount());
            JsonNode r = StudyResults.compute(store, "pg");
            assertEquals(2, r.get("votes").asInt());
            assertEquals(2, r.get("pairs").get(0).path("flaws").path("n").asInt() + r.get("pairs").get(0).path("appeal").path("n").asInt());
            assertEquals("one", store.annotatorName(t1));
        }
    }
}
