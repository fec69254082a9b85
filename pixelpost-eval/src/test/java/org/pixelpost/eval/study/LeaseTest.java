package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Items are leased: a vote counts only on an item given to the voter, and the quota is never exceeded, not even for its last place. */
class LeaseTest {
    final AtomicLong now = new AtomicLong(1_000_000);

    StudyStore store(Path dir, int items, int quota) throws Exception {
        StudyStore s = new StudyStore("jdbc:sqlite:" + dir.resolve("s.db"), Duration.ofSeconds(60), now::get);
        List<ObjectNode> payloads = new ArrayList<>();
        for (int i = 0; i < items; i++) payloads.add(StudyStore.JSON.createObjectNode().put("n", i));
        s.createStudy(new StudyStore.Study("s", StudyStore.Kind.AB, quota, false, StudyStore.JSON.createObjectNode()), payloads, Map.of());
        return s;
    }

    static ObjectNode left() {
        return StudyStore.JSON.createObjectNode().put("choice", "left");
    }

    @Test
    void aVoteOnAnItemNotLeasedToTheVoterIsRefused(@TempDir Path dir) throws Exception {
        try (StudyStore s = store(dir, 3, 2)) {
            String a = s.join("a"), b = s.join("b");
            StudyStore.Item mine = s.next("s", a);
            assertEquals(StudyStore.VoteResult.NOT_LEASED, s.vote(mine.id(), b, left()), "b was never given a's item");
            assertEquals(mine.id(), s.next("s", a).id(), "a reloaded page gets the same item");
            assertEquals(StudyStore.VoteResult.STORED, s.vote(mine.id(), a, left()));
            assertEquals(StudyStore.VoteResult.DUPLICATE, s.vote(mine.id(), a, left()));
            assertNotEquals(mine.id(), s.next("s", a).id(), "never the same item twice");
        }
    }

    @Test
    void twoAnnotatorsNeverBothGetTheLastPlace(@TempDir Path dir) throws Exception {
        try (StudyStore s = store(dir, 1, 1)) {
            List<String> tokens = new ArrayList<>();
            for (int i = 0; i < 8; i++) tokens.add(s.join("a" + i));
            ExecutorService pool = Executors.newFixedThreadPool(8);
            CountDownLatch go = new CountDownLatch(1);
            Set<String> got = ConcurrentHashMap.newKeySet();
            List<Future<?>> f = new ArrayList<>();
            for (String t : tokens) f.add(pool.submit(() -> {
                go.await();
                if (s.next("s", t) != null) got.add(t);
                return null;
            }));
            go.countDown();
            for (Future<?> x : f) x.get();
            pool.shutdown();
            assertEquals(1, got.size(), "one of eight annotators asking at once gets the item's only place");
            String holder = got.iterator().next(), other = tokens.stream().filter(t -> !t.equals(holder)).findFirst().orElseThrow();
            // the lease expires: the place returns to the pool; the first vote fills the quota, the late one is refused
            now.addAndGet(61_000);
            StudyStore.Item it = s.next("s", other);
            assertNotNull(it, "an expired lease returns the place to the pool");
            assertEquals(StudyStore.VoteResult.STORED, s.vote(it.id(), other, left()));
            assertEquals(StudyStore.VoteResult.FULL, s.vote(it.id(), holder, left()), "the expired holder's late vote would go past the quota");
            assertEquals(1, s.answers("s").values().iterator().next().size());
        }
    }

    @Test
    void everyItemReachesItsQuotaBeforeAnyGetsAnotherAndRenewalKeepsThePlace(@TempDir Path dir) throws Exception {
        try (StudyStore s = store(dir, 4, 2)) {
            List<String> tokens = new ArrayList<>();
            for (int i = 0; i < 4; i++) tokens.add(s.join("a" + i));
            // four annotators at once take four different items: the fewest-filled first
            Set<String> first = new java.util.HashSet<>();
            for (String t : tokens) first.add(s.next("s", t).id());
            assertEquals(4, first.size());
            // a renewed lease outlives the original term
            String a = tokens.get(0);
            StudyStore.Item held = s.next("s", a);
            now.addAndGet(45_000);
            assertTrue(s.renew(held.id(), a));
            now.addAndGet(45_000);
            String late = s.join("late");
            StudyStore.Item other = s.next("s", late);
            assertNotNull(other);
            assertTrue(s.renew(held.id(), a), "a's lease is still a's");
            assertFalse(s.renew(held.id(), late), "late holds no lease on a's item");
            // with every place leased, a sixth, seventh... annotator may take second places but never a third
            for (int i = 0; i < 6; i++) {
                String t = s.join("extra" + i);
                StudyStore.Item it = s.next("s", t);
                if (it != null) assertEquals(StudyStore.VoteResult.STORED, s.vote(it.id(), t, left()));
            }
            for (String t : tokens) {
                StudyStore.Item it = s.next("s", t);
                if (it != null) s.vote(it.id(), t, left());
            }
            s.answers("s").values().forEach(v -> assertTrue(v.size() <= 2, "never past the quota: " + v.size()));
        }
    }
}
