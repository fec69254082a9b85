package org.pixelpost.eval.study;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * Studies, items, annotators and votes in SQL that SQLite and PostgreSQL both speak. Every write
 * is its own transaction, committed before it is acknowledged; one connection, serialised, which
 * is plenty for a room of annotators and keeps SQLite's single writer happy.
 */
public final class StudyStore implements AutoCloseable {
    public enum Kind { AB, ALIGNMENT, PAIRS }

    /** A study's settings. */
    public record Study(String name, Kind kind, int annotatorsPerItem, boolean closed, ObjectNode settings) {}

    /** One unit of annotation; the payload holds what only the server may know (model names). */
    public record Item(String id, String study, int position, ObjectNode payload) {}

    /**
     * The outcome of a vote attempt: stored; a repeat of this annotator's stored vote; an unknown
     * item; a closed study; an item never leased to this annotator; an item whose quota filled up
     * while this annotator's lease had expired.
     */
    public enum VoteResult { STORED, DUPLICATE, UNKNOWN_ITEM, CLOSED, NOT_LEASED, FULL }

    /** How long an item stays reserved for the annotator it was given to, unless the page renews it. */
    public static final Duration DEFAULT_LEASE = Duration.ofMinutes(2);

    static final ObjectMapper JSON = new ObjectMapper();
    private static final SecureRandom RANDOM = new SecureRandom();
    private final Connection db;
    private final String url;
    private final Duration lease;
    private final LongSupplier clock;

    public StudyStore(String jdbcUrl) throws SQLException {
        this(jdbcUrl, DEFAULT_LEASE, System::currentTimeMillis);
    }

    /** A store whose leases last {@code lease}, timed by {@code clock} (milliseconds). */
    public StudyStore(String jdbcUrl, Duration lease, LongSupplier clock) throws SQLException {
        this.url = jdbcUrl;
        this.lease = lease;
        this.clock = clock;
        this.db = DriverManager.getConnection(jdbcUrl);
        boolean sqlite = jdbcUrl.startsWith("jdbc:sqlite:");
        try (Statement s = db.createStatement()) {
            if (sqlite) {
                s.execute("PRAGMA journal_mode=WAL");
                s.execute("PRAGMA synchronous=FULL"); // an acknowledged vote survives a crash of the machine, not only of the server
                s.execute("PRAGMA busy_timeout=5000");
            }
            s.execute("CREATE TABLE IF NOT EXISTS studies (name VARCHAR(200) PRIMARY KEY, kind VARCHAR(20) NOT NULL, "
                + "annotators INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0, settings TEXT NOT NULL, created VARCHAR(40) NOT NULL)");
            s.execute("CREATE TABLE IF NOT EXISTS items (id VARCHAR(40) PRIMARY KEY, study VARCHAR(200) NOT NULL REFERENCES studies(name), "
                + "position INTEGER NOT NULL, payload TEXT NOT NULL)");
            s.execute("CREATE INDEX IF NOT EXISTS items_study ON items(study, position)");
            s.execute("CREATE TABLE IF NOT EXISTS annotators (token VARCHAR(64) PRIMARY KEY, name VARCHAR(200) NOT NULL, created VARCHAR(40) NOT NULL)");
            s.execute("CREATE TABLE IF NOT EXISTS votes (item VARCHAR(40) NOT NULL REFERENCES items(id), annotator VARCHAR(64) NOT NULL "
                + "REFERENCES annotators(token), answer TEXT NOT NULL, created VARCHAR(40) NOT NULL, PRIMARY KEY (item, annotator))");
            s.execute("CREATE INDEX IF NOT EXISTS votes_item ON votes(item)");
            s.execute("CREATE TABLE IF NOT EXISTS images (id VARCHAR(40) PRIMARY KEY, path TEXT NOT NULL)");
            s.execute("CREATE TABLE IF NOT EXISTS invitations (token VARCHAR(64) PRIMARY KEY REFERENCES annotators(token))");
            // an item given to an annotator holds one of its quota's places until the lease expires or the vote arrives
            s.execute("CREATE TABLE IF NOT EXISTS leases (item VARCHAR(40) NOT NULL REFERENCES items(id), annotator VARCHAR(64) NOT NULL "
                + "REFERENCES annotators(token), expires BIGINT NOT NULL, PRIMARY KEY (item, annotator))");
        }
        db.setAutoCommit(false);
        db.commit();
    }

    public String url() {
        return url;
    }

    public static String randomId(int bytes) {
        byte[] b = new byte[bytes];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    private interface Tx<T> {
        T run() throws SQLException;
    }

    /** Runs {@code t} as one transaction: committed as a whole or not at all. */
    private synchronized <T> T tx(Tx<T> t) throws SQLException {
        try {
            T r = t.run();
            db.commit();
            return r;
        } catch (SQLException | RuntimeException e) {
            db.rollback();
            throw e;
        }
    }

    public void createStudy(Study s, List<ObjectNode> items, Map<String, String> images) throws SQLException {
        tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT 1 FROM studies WHERE name = ?")) {
                p.setString(1, s.name());
                if (p.executeQuery().next()) throw new IllegalArgumentException("a study named '" + s.name() + "' exists already");
            }
            try (PreparedStatement p = db.prepareStatement("INSERT INTO studies (name, kind, annotators, closed, settings, created) VALUES (?, ?, ?, 0, ?, ?)")) {
                p.setString(1, s.name());
                p.setString(2, s.kind().name());
                p.setInt(3, s.annotatorsPerItem());
                p.setString(4, s.settings().toString());
                p.setString(5, Instant.now().toString());
                p.executeUpdate();
            }
            try (PreparedStatement p = db.prepareStatement("INSERT INTO images (id, path) VALUES (?, ?)")) {
                for (Map.Entry<String, String> e : images.entrySet()) {
                    p.setString(1, e.getKey());
                    p.setString(2, e.getValue());
                    p.addBatch();
                }
                p.executeBatch();
            }
            try (PreparedStatement p = db.prepareStatement("INSERT INTO items (id, study, position, payload) VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < items.size(); i++) {
                    p.setString(1, randomId(12));
                    p.setString(2, s.name());
                    p.setInt(3, i);
                    p.setString(4, items.get(i).toString());
                    p.addBatch();
                }
                p.executeBatch();
            }
            return null;
        });
    }

    public List<Study> studies() throws SQLException {
        return tx(() -> {
            List<Study> out = new ArrayList<>();
            try (Statement s = db.createStatement(); ResultSet r = s.executeQuery("SELECT name, kind, annotators, closed, settings FROM studies ORDER BY created, name")) {
                while (r.next()) out.add(study(r));
            }
            return out;
        });
    }

    public Study study(String name) throws SQLException {
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT name, kind, annotators, closed, settings FROM studies WHERE name = ?")) {
                p.setString(1, name);
                ResultSet r = p.executeQuery();
                return r.next() ? study(r) : null;
            }
        });
    }

    private static Study study(ResultSet r) throws SQLException {
        try {
            return new Study(r.getString(1), Kind.valueOf(r.getString(2)), r.getInt(3), r.getInt(4) != 0, (ObjectNode) JSON.readTree(r.getString(5)));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new SQLException("corrupt study settings", e);
        }
    }

    public void close(String study) throws SQLException {
        tx(() -> {
            try (PreparedStatement p = db.prepareStatement("UPDATE studies SET closed = 1 WHERE name = ?")) {
                p.setString(1, study);
                if (p.executeUpdate() == 0) throw new IllegalArgumentException("no study named '" + study + "'");
            }
            return null;
        });
    }

    /** A new annotator; returns the token that identifies them. */
    public String join(String name) throws SQLException {
        return join(name, false);
    }

    /** A new annotator invited by the organiser (an invitation link); returns the token. */
    public String invite(String name) throws SQLException {
        return join(name, true);
    }

    private String join(String name, boolean invited) throws SQLException {
        String token = randomId(16);
        tx(() -> {
            try (PreparedStatement p = db.prepareStatement("INSERT INTO annotators (token, name, created) VALUES (?, ?, ?)")) {
                p.setString(1, token);
                p.setString(2, name);
                p.setString(3, Instant.now().toString());
                p.executeUpdate();
            }
            if (invited)
                try (PreparedStatement p = db.prepareStatement("INSERT INTO invitations (token) VALUES (?)")) {
                    p.setString(1, token);
                    p.executeUpdate();
                }
            return null;
        });
        return token;
    }

    /** How many invitations were made, and how many annotators joined on their own. */
    public long[] joinCounts() throws SQLException {
        return tx(() -> {
            try (Statement s = db.createStatement(); ResultSet r = s.executeQuery(
                "SELECT (SELECT COUNT(*) FROM invitations), (SELECT COUNT(*) FROM annotators) - (SELECT COUNT(*) FROM invitations)")) {
                r.next();
                return new long[] {r.getLong(1), r.getLong(2)};
            }
        });
    }

    public String annotatorName(String token) throws SQLException {
        if (token == null) return null;
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT name FROM annotators WHERE token = ?")) {
                p.setString(1, token);
                ResultSet r = p.executeQuery();
                return r.next() ? r.getString(1) : null;
            }
        });
    }

    /**
     * The item this annotator should answer next, leased to them: the one they hold an unexpired
     * lease on (renewed; a reloaded page gets the same item), otherwise, among the items they have
     * not answered whose votes plus other annotators' unexpired leases are below the quota, one
     * with the fewest (so every item reaches its quota before the study ends), in an order of the
     * annotator's own. Null when there is none.
     */
    public Item next(String study, String annotator) throws SQLException {
        return tx(() -> {
            long now = clock.getAsLong();
            try (PreparedStatement p = db.prepareStatement("SELECT l.item FROM leases l JOIN items i ON i.id = l.item "
                + "JOIN studies s ON s.name = i.study WHERE i.study = ? AND s.closed = 0 "
                + "AND l.annotator = ? AND l.expires > ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.item = l.item AND v.annotator = l.annotator) "
                + "ORDER BY i.position")) {
                p.setString(1, study);
                p.setString(2, annotator);
                p.setLong(3, now);
                ResultSet r = p.executeQuery();
                if (r.next()) {
                    String id = r.getString(1);
                    setLease(id, annotator, now);
                    return itemInTx(id);
                }
            }
            // the pair this annotator answered last: its other question is not served right after it
            String lastPair = null;
            try (PreparedStatement p = db.prepareStatement("SELECT i.payload FROM votes v JOIN items i ON i.id = v.item WHERE i.study = ? "
                + "AND v.annotator = ? ORDER BY v.created DESC LIMIT 1")) {
                p.setString(1, study);
                p.setString(2, annotator);
                ResultSet r = p.executeQuery();
                if (r.next()) lastPair = pairKey(parse(r.getString(1)));
            }
            String best = null;
            long bestRank = Long.MAX_VALUE, bestOrder = Long.MAX_VALUE;
            try (PreparedStatement p = db.prepareStatement("SELECT i.id, (SELECT COUNT(*) FROM votes c WHERE c.item = i.id) "
                + "+ (SELECT COUNT(*) FROM leases l WHERE l.item = i.id AND l.expires > ? AND l.annotator <> ?) AS n, s.annotators, i.payload "
                + "FROM items i JOIN studies s ON s.name = i.study WHERE i.study = ? AND s.closed = 0 "
                + "AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.item = i.id AND v.annotator = ?)")) {
                p.setLong(1, now);
                p.setString(2, annotator);
                p.setString(3, study);
                p.setString(4, annotator);
                ResultSet r = p.executeQuery();
                while (r.next()) {
                    long n = r.getLong(2);
                    if (n >= r.getInt(3)) continue;
                    // fewest filled first; among equals, not the last pair's other question, then the annotator's own order
                    long rank = 2 * n + (lastPair != null && lastPair.equals(pairKey(parse(r.getString(4)))) ? 1 : 0);
                    long order = order(annotator, r.getString(1));
                    if (rank < bestRank || rank == bestRank && order < bestOrder) {
                        best = r.getString(1);
                        bestRank = rank;
                        bestOrder = order;
                    }
                }
            }
            if (best == null) return null;
            setLease(best, annotator, now);
            return itemInTx(best);
        });
    }

    /** The compared pair of an A/B item (prompt, seed and the two models, whatever the question), or null for other kinds. */
    static String pairKey(ObjectNode payload) {
        if (!payload.has("question") || !payload.has("left")) return null;
        String a = payload.path("left").path("model").asText(), b = payload.path("right").path("model").asText();
        return payload.path("prompt").asText() + "\u0000" + payload.path("seed").asText() + "\u0000" + (a.compareTo(b) < 0 ? a + "|" + b : b + "|" + a);
    }

    /** A per-annotator order of the items, so each annotator meets them in another order. */
    private static long order(String annotator, String item) {
        return draw(annotator, item, "order");
    }

    /**
     * A pseudo-random 64-bit draw fixed by (annotator, item, purpose): what the blinding decides per
     * annotator and item (their order of items, the sides they see), repeatable without storing it.
     */
    static long draw(String annotator, String item, String purpose) {
        long h = 1125899906842597L;
        for (char c : (purpose + "|" + annotator + "|" + item).toCharArray()) h = 31 * h + c;
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        h *= 0xc4ceb9fe1a85ec53L;
        h ^= h >>> 33;
        return h;
    }

    private void setLease(String item, String annotator, long now) throws SQLException {
        try (PreparedStatement d = db.prepareStatement("DELETE FROM leases WHERE item = ? AND annotator = ?")) {
            d.setString(1, item);
            d.setString(2, annotator);
            d.executeUpdate();
        }
        try (PreparedStatement p = db.prepareStatement("INSERT INTO leases (item, annotator, expires) VALUES (?, ?, ?)")) {
            p.setString(1, item);
            p.setString(2, annotator);
            p.setLong(3, now + lease.toMillis());
            p.executeUpdate();
        }
    }

    /** Extends this annotator's lease on {@code item} while its page is open; false when they hold none (or already voted). */
    public boolean renew(String item, String annotator) throws SQLException {
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("UPDATE leases SET expires = ? WHERE item = ? AND annotator = ? "
                + "AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.item = leases.item AND v.annotator = leases.annotator)")) {
                p.setLong(1, clock.getAsLong() + lease.toMillis());
                p.setString(2, item);
                p.setString(3, annotator);
                return p.executeUpdate() > 0;
            }
        });
    }

    private Item itemInTx(String id) throws SQLException {
        try (PreparedStatement p = db.prepareStatement("SELECT id, study, position, payload FROM items WHERE id = ?")) {
            p.setString(1, id);
            ResultSet r = p.executeQuery();
            return r.next() ? new Item(r.getString(1), r.getString(2), r.getInt(3), parse(r.getString(4))) : null;
        }
    }

    public Item item(String id) throws SQLException {
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT id, study, position, payload FROM items WHERE id = ?")) {
                p.setString(1, id);
                ResultSet r = p.executeQuery();
                return r.next() ? new Item(r.getString(1), r.getString(2), r.getInt(3), parse(r.getString(4))) : null;
            }
        });
    }

    /** Stores a vote once; a second vote by the same annotator on the same item is refused. */
    public VoteResult vote(String itemId, String annotator, JsonNode answer) throws SQLException {
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT s.closed FROM items i JOIN studies s ON s.name = i.study WHERE i.id = ?")) {
                p.setString(1, itemId);
                ResultSet r = p.executeQuery();
                if (!r.next()) return VoteResult.UNKNOWN_ITEM;
                if (r.getInt(1) != 0) return VoteResult.CLOSED;
            }
            try (PreparedStatement p = db.prepareStatement("SELECT 1 FROM votes WHERE item = ? AND annotator = ?")) {
                p.setString(1, itemId);
                p.setString(2, annotator);
                if (p.executeQuery().next()) return VoteResult.DUPLICATE;
            }
            // only an item given to this annotator; an expired lease still counts while the quota has room
            try (PreparedStatement p = db.prepareStatement("SELECT 1 FROM leases WHERE item = ? AND annotator = ?")) {
                p.setString(1, itemId);
                p.setString(2, annotator);
                if (!p.executeQuery().next()) return VoteResult.NOT_LEASED;
            }
            try (PreparedStatement p = db.prepareStatement("SELECT (SELECT COUNT(*) FROM votes v WHERE v.item = i.id), s.annotators "
                + "FROM items i JOIN studies s ON s.name = i.study WHERE i.id = ?")) {
                p.setString(1, itemId);
                ResultSet r = p.executeQuery();
                r.next();
                if (r.getLong(1) >= r.getInt(2)) {
                    deleteLease(itemId, annotator);
                    return VoteResult.FULL;
                }
            }
            deleteLease(itemId, annotator);
            try (PreparedStatement p = db.prepareStatement("INSERT INTO votes (item, annotator, answer, created) VALUES (?, ?, ?, ?)")) {
                p.setString(1, itemId);
                p.setString(2, annotator);
                p.setString(3, answer.toString());
                p.setString(4, Instant.now().toString());
                p.executeUpdate();
            }
            return VoteResult.STORED;
        });
    }

    private void deleteLease(String item, String annotator) throws SQLException {
        try (PreparedStatement d = db.prepareStatement("DELETE FROM leases WHERE item = ? AND annotator = ?")) {
            d.setString(1, item);
            d.setString(2, annotator);
            d.executeUpdate();
        }
    }

    /** Progress of one annotator and of the whole study. */
    public Map<String, Integer> progress(String study, String annotator) throws SQLException {
        return tx(() -> {
            Map<String, Integer> m = new LinkedHashMap<>();
            try (PreparedStatement p = db.prepareStatement("SELECT COUNT(*) FROM items WHERE study = ?")) {
                p.setString(1, study);
                ResultSet r = p.executeQuery();
                r.next();
                m.put("items", r.getInt(1));
            }
            try (PreparedStatement p = db.prepareStatement("SELECT COUNT(*) FROM votes v JOIN items i ON i.id = v.item WHERE i.study = ?")) {
                p.setString(1, study);
                ResultSet r = p.executeQuery();
                r.next();
                m.put("votes", r.getInt(1));
            }
            try (PreparedStatement p = db.prepareStatement("SELECT COUNT(*) FROM votes v JOIN items i ON i.id = v.item WHERE i.study = ? AND v.annotator = ?")) {
                p.setString(1, study);
                p.setString(2, annotator == null ? "" : annotator);
                ResultSet r = p.executeQuery();
                r.next();
                m.put("mine", r.getInt(1));
            }
            return m;
        });
    }

    /** Every item of a study with its answers, in item order. */
    public Map<Item, List<JsonNode>> answers(String study) throws SQLException {
        return tx(() -> {
            Map<String, Item> items = new LinkedHashMap<>();
            try (PreparedStatement p = db.prepareStatement("SELECT id, position, payload FROM items WHERE study = ? ORDER BY position")) {
                p.setString(1, study);
                ResultSet r = p.executeQuery();
                while (r.next()) items.put(r.getString(1), new Item(r.getString(1), study, r.getInt(2), parse(r.getString(3))));
            }
            Map<Item, List<JsonNode>> out = new LinkedHashMap<>();
            items.values().forEach(i -> out.put(i, new ArrayList<>()));
            try (PreparedStatement p = db.prepareStatement("SELECT v.item, v.answer FROM votes v JOIN items i ON i.id = v.item WHERE i.study = ? ORDER BY v.created")) {
                p.setString(1, study);
                ResultSet r = p.executeQuery();
                while (r.next()) out.get(items.get(r.getString(1))).add(parse(r.getString(2)));
            }
            return out;
        });
    }

    /** One stored vote with its annotator and time. */
    public record Vote(String item, String annotator, JsonNode answer, Instant created) {}

    /** Every vote of a study, oldest first. */
    public List<Vote> votes(String study) throws SQLException {
        return tx(() -> {
            List<Vote> out = new ArrayList<>();
            try (PreparedStatement p = db.prepareStatement("SELECT v.item, v.annotator, v.answer, v.created FROM votes v JOIN items i ON i.id = v.item "
                + "WHERE i.study = ? ORDER BY v.created")) {
                p.setString(1, study);
                ResultSet r = p.executeQuery();
                while (r.next()) out.add(new Vote(r.getString(1), r.getString(2), parse(r.getString(3)), Instant.parse(r.getString(4))));
            }
            return out;
        });
    }

    public String imagePath(String id) throws SQLException {
        return tx(() -> {
            try (PreparedStatement p = db.prepareStatement("SELECT path FROM images WHERE id = ?")) {
                p.setString(1, id);
                ResultSet r = p.executeQuery();
                return r.next() ? r.getString(1) : null;
            }
        });
    }

    public long voteCount() throws SQLException {
        return tx(() -> {
            try (Statement s = db.createStatement(); ResultSet r = s.executeQuery("SELECT COUNT(*) FROM votes")) {
                r.next();
                return r.getLong(1);
            }
        });
    }

    static ObjectNode parse(String s) {
        try {
            return (ObjectNode) JSON.readTree(s);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException("corrupt stored JSON", e);
        }
    }

    @Override
    public synchronized void close() throws SQLException {
        db.close();
    }
}
