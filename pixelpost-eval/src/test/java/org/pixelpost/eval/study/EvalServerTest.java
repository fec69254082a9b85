package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every endpoint over real HTTP, bad input included. */
class EvalServerTest {
    @TempDir static Path dir;
    static StudyStore store;
    static EvalServer server;
    static final HttpClient HTTP = HttpClient.newHttpClient();
    static final String SCRIPT = "<script>alert('x')</script> a cat";

    @BeforeAll
    static void start() throws Exception {
        store = new StudyStore("jdbc:sqlite:" + dir.resolve("eval.db"));
        Map<String, Path> ab = new LinkedHashMap<>();
        ab.put("base", StudyFixtures.samples(dir.resolve("a"), List.of("red heart", "rocket"), 1, 0x102030));
        ab.put("tuned", StudyFixtures.samples(dir.resolve("b"), List.of("red heart", "rocket"), 1, 0x405060));
        Studies.create(store, "ab", StudyStore.Kind.AB, ab, null, null, 2, 1);
        Path q = dir.resolve("questions.json");
        java.nio.file.Files.writeString(q, "{" + StudyStore.JSON.writeValueAsString(SCRIPT) + ": [\"is there a cat?\", \"is it red?\"]}");
        Studies.create(store, "align", StudyStore.Kind.ALIGNMENT, Map.of("base", StudyFixtures.samples(dir.resolve("c"), List.of(SCRIPT), 1, 0x777777)), q, null, 3, 1);
        Studies.create(store, "pick", StudyStore.Kind.PAIRS, Map.of("base", StudyFixtures.samples(dir.resolve("d"), List.of("star"), 5, 0x111111)), null, null, 3, 1);
        // open joining, whatever the invitations (the join policy has tests of its own, below)
        server = new EvalServer(store, "admin-secret", new EvalServer.Options(true, 1000, 1000, null)).start("127.0.0.1", 0);
    }

    @AfterAll
    static void stop() throws Exception {
        server.close();
        store.close();
    }

    static HttpResponse<String> call(String method, String path, String token, String body, String admin) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path));
        if (token != null) b.header("X-Annotator-Token", token);
        if (admin != null) b.header("Authorization", "Bearer " + admin);
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode json(HttpResponse<String> r) throws Exception {
        return StudyStore.JSON.readTree(r.body());
    }

    static String join(String name) throws Exception {
        HttpResponse<String> r = call("POST", "/api/join", null, "{\"name\":" + StudyStore.JSON.writeValueAsString(name) + "}", null);
        assertEquals(201, r.statusCode());
        return json(r).get("token").asText();
    }

    @Test
    void pagesAreServed() throws Exception {
        HttpResponse<String> index = call("GET", "/", null, null, null);
        assertEquals(200, index.statusCode());
        assertTrue(index.headers().firstValue("Content-Type").orElse("").startsWith("text/html"));
        assertFalse(index.body().contains("innerHTML"), "the page writes text with textContent only");
        assertTrue(call("GET", "/instructions", null, null, null).body().contains("Reject pair"));
    }

    @Test
    void joinValidatesTheName() throws Exception {
        assertEquals(400, call("POST", "/api/join", null, "{\"name\":\"  \"}", null).statusCode());
        assertEquals(400, call("POST", "/api/join", null, "{\"name\":\"" + "x".repeat(101) + "\"}", null).statusCode());
        assertEquals(400, call("POST", "/api/join", null, "not json", null).statusCode());
        assertEquals(400, call("POST", "/api/join", null, "[1, 2]", null).statusCode());
        String t = join("Ada");
        assertEquals("Ada", json(call("GET", "/api/me", t, null, null)).get("name").asText());
    }

    @Test
    void missingOrUnknownTokenIsRefused() throws Exception {
        for (String path : List.of("/api/me", "/api/studies", "/api/studies/ab/next", "/api/studies/ab/progress")) {
            assertEquals(401, call("GET", path, null, null, null).statusCode(), path);
            assertEquals(401, call("GET", path, "forged", null, null).statusCode(), path);
        }
        assertEquals(401, call("POST", "/api/votes", null, "{\"item\":\"x\",\"choice\":\"left\"}", null).statusCode());
    }

    @Test
    void abItemsHideTheModelsAndVotesAreStoredOnce() throws Exception {
        String t = join("Grace");
        JsonNode studies = json(call("GET", "/api/studies", t, null, null));
        assertEquals(3, studies.size());
        HttpResponse<String> r = call("GET", "/api/studies/ab/next", t, null, null);
        assertEquals(200, r.statusCode());
        assertFalse(r.body().contains("base") || r.body().contains("tuned") || r.body().contains(dir.toString()), "no model names or paths: " + r.body());
        JsonNode item = json(r);
        assertEquals("ab", item.get("kind").asText());
        HttpResponse<byte[]> img = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + item.get("left").asText())).build(),
            HttpResponse.BodyHandlers.ofByteArray());
        assertEquals(200, img.statusCode());
        assertEquals("image/png", img.headers().firstValue("Content-Type").orElse(""));
        assertEquals(404, call("GET", "/images/nope", null, null, null).statusCode());
        String vote = "{\"item\":\"" + item.get("id").asText() + "\",\"choice\":\"left\"}";
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":\"" + item.get("id").asText() + "\",\"choice\":\"sideways\"}", null).statusCode());
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":", null).statusCode());
        assertEquals(404, call("POST", "/api/votes", t, "{\"item\":\"no-such-item\",\"choice\":\"left\"}", null).statusCode());
        // another annotator cannot vote on Grace's item; her page renews its lease, his cannot
        String other = join("Henry");
        HttpResponse<String> stolen = call("POST", "/api/votes", other, vote, null);
        assertEquals(409, stolen.statusCode());
        assertTrue(stolen.body().contains("not given to you"), stolen.body());
        String lease = "{\"item\":\"" + item.get("id").asText() + "\"}";
        assertEquals(200, call("POST", "/api/studies/ab/lease", t, lease, null).statusCode());
        assertEquals(409, call("POST", "/api/studies/ab/lease", other, lease, null).statusCode());
        assertEquals(201, call("POST", "/api/votes", t, vote, null).statusCode());
        // she voted for the image she saw on the left; the store keeps the item's own orientation
        StudyStore.Item stored0 = store.item(item.get("id").asText());
        boolean swap = EvalServer.swapped(t, stored0.id());
        assertEquals("/images/" + stored0.payload().get(swap ? "right" : "left").get("image").asText(), item.get("left").asText());
        JsonNode kept = store.answers("ab").get(stored0).get(0);
        assertEquals(swap ? "right" : "left", kept.get("choice").asText());
        long stored = store.voteCount();
        assertEquals(409, call("POST", "/api/votes", t, vote, null).statusCode(), "a replayed vote is refused");
        assertEquals(stored, store.voteCount(), "and stores nothing");
        assertNotEquals(item.get("id").asText(), json(call("GET", "/api/studies/ab/next", t, null, null)).get("id").asText(), "a seen item is not served again");
        JsonNode p = json(call("GET", "/api/studies/ab/progress", t, null, null));
        assertEquals(1, p.get("mine").asInt());
        assertEquals(8, p.get("needed").asInt());
        assertEquals(404, call("GET", "/api/studies/none/next", t, null, null).statusCode());
    }

    @Test
    void alignmentAndPairsValidateTheirAnswers() throws Exception {
        String t = join("Linus");
        JsonNode a = json(call("GET", "/api/studies/align/next", t, null, null));
        assertEquals(SCRIPT, a.get("prompt").asText(), "the prompt travels as data, verbatim");
        String id = a.get("id").asText();
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":\"" + id + "\",\"answers\":[true]}", null).statusCode());
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":\"" + id + "\",\"answers\":[true, \"yes\"]}", null).statusCode());
        assertEquals(201, call("POST", "/api/votes", t, "{\"item\":\"" + id + "\",\"answers\":[true, false]}", null).statusCode());
        JsonNode p = json(call("GET", "/api/studies/pick/next", t, null, null));
        assertEquals(5, p.get("images").size());
        String pid = p.get("id").asText();
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":\"" + pid + "\",\"best\":1,\"worst\":1}", null).statusCode());
        assertEquals(400, call("POST", "/api/votes", t, "{\"item\":\"" + pid + "\",\"best\":5,\"worst\":1}", null).statusCode());
        assertEquals(201, call("POST", "/api/votes", t, "{\"item\":\"" + pid + "\",\"best\":0,\"worst\":4}", null).statusCode());
    }

    @Test
    void adminActionsNeedTheToken() throws Exception {
        for (String[] c : new String[][] {{"GET", "/api/admin/studies/ab/results"}, {"GET", "/api/admin/studies/ab/export"},
            {"POST", "/api/admin/studies/pick/close"}, {"POST", "/api/admin/invite"}}) {
            assertEquals(401, call(c[0], c[1], null, "{}", null).statusCode(), c[1]);
            assertEquals(401, call(c[0], c[1], null, "{}", "wrong").statusCode(), c[1]);
            String annotator = join("Mallory");
            assertEquals(401, call(c[0], c[1], annotator, "{}", null).statusCode(), "annotators cannot read votes: " + c[1]);
        }
        assertEquals(200, call("GET", "/api/admin/studies/ab/results", null, null, "admin-secret").statusCode());
        assertEquals(404, call("GET", "/api/admin/studies/none/results", null, null, "admin-secret").statusCode());
        JsonNode inv = json(call("POST", "/api/admin/invite", null, "{\"name\":\"Invited\"}", "admin-secret"));
        assertEquals("Invited", json(call("GET", "/api/me", inv.get("token").asText(), null, null)).get("name").asText());
    }

    @Test
    void aClosedStudyServesAndTakesNothing() throws Exception {
        Studies.create(store, "short", StudyStore.Kind.PAIRS, Map.of("m", StudyFixtures.samples(dir.resolve("e"), List.of("moon"), 3, 0x222222)), null, null, 2, 1);
        String t = join("Ken");
        JsonNode item = json(call("GET", "/api/studies/short/next", t, null, null));
        assertEquals(200, call("POST", "/api/admin/studies/short/close", null, null, "admin-secret").statusCode());
        assertTrue(json(call("GET", "/api/studies/short/next", t, null, null)).get("done").asBoolean());
        assertEquals(409, call("POST", "/api/votes", t, "{\"item\":\"" + item.get("id").asText() + "\",\"best\":0,\"worst\":1}", null).statusCode());
    }

    static HttpResponse<String> post(EvalServer srv, String path, String body, String admin) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + srv.port() + path)).POST(HttpRequest.BodyPublishers.ofString(body));
        if (admin != null) b.header("Authorization", "Bearer " + admin);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void joiningIsByInvitationOnceThereAreInvitationsAndIsCappedAndRateLimited() throws Exception {
        try (StudyStore st = new StudyStore("jdbc:sqlite:" + dir.resolve("join.db"));
             EvalServer auto = new EvalServer(st, "adm", new EvalServer.Options(null, 1000, 1000, "https://eval.example.org/")).start("127.0.0.1", 0)) {
            assertEquals(201, post(auto, "/api/join", "{\"name\":\"early\"}", null).statusCode(), "no invitations yet: open");
            JsonNode inv = StudyStore.JSON.readTree(post(auto, "/api/admin/invite", "{\"name\":\"Invited\"}", "adm").body());
            assertEquals("https://eval.example.org/?token=" + inv.get("token").asText(), inv.get("link").asText(), "--public-url: an absolute link");
            HttpResponse<String> r = post(auto, "/api/join", "{\"name\":\"late\"}", null);
            assertEquals(403, r.statusCode(), "invitations exist: invitation-only");
            assertTrue(r.body().contains("invitation"), r.body());
        }
        try (StudyStore st = new StudyStore("jdbc:sqlite:" + dir.resolve("cap.db"));
             EvalServer capped = new EvalServer(st, "adm", new EvalServer.Options(true, 2, 1000, null)).start("127.0.0.1", 0);
             EvalServer limited = new EvalServer(st, "adm", new EvalServer.Options(true, 1000, 3, null)).start("127.0.0.1", 0)) {
            assertEquals(201, post(capped, "/api/join", "{\"name\":\"a\"}", null).statusCode());
            assertEquals(201, post(capped, "/api/join", "{\"name\":\"b\"}", null).statusCode());
            assertEquals(403, post(capped, "/api/join", "{\"name\":\"c\"}", null).statusCode(), "the cap on joins");
            for (int i = 0; i < 3; i++) assertEquals(201, post(limited, "/api/join", "{\"name\":\"r" + i + "\"}", null).statusCode());
            HttpResponse<String> r = post(limited, "/api/join", "{\"name\":\"r3\"}", null);
            assertEquals(429, r.statusCode(), "a fourth join from one address within the minute");
            assertEquals("60", r.headers().firstValue("Retry-After").orElse(""));
        }
    }

    @Test
    void bodiesAreLimitedBeforeTheyAreReadAndMustBeExactlyOneJsonObject() throws Exception {
        String t = join("Olga");
        String big = "{\"name\":\"" + "x".repeat(20_000) + "\"}";
        assertEquals(413, call("POST", "/api/join", null, big, null).statusCode(), "declared length over the limit");
        // a chunked body (no length given) of 2 MB: refused once the limit is passed, not read whole
        byte[] chunked = ("{\"name\":\"" + "y".repeat(2_000_000) + "\"}").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/api/join"))
            .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new java.io.ByteArrayInputStream(chunked))).build();
        assertEquals(413, HTTP.send(req, HttpResponse.BodyHandlers.ofString()).statusCode(), "chunked body over the limit");
        assertEquals(400, call("POST", "/api/join", null, "{\"name\":\"a\"} trailing junk", null).statusCode(), "junk after the object");
        assertEquals(400, call("POST", "/api/join", null, "{\"name\":\"a\"}{\"name\":\"b\"}", null).statusCode(), "two objects");
        assertEquals(401, call("GET", "/api/me", "not-a-token", null, null).statusCode());
        assertEquals(200, call("GET", "/api/me", t, null, null).statusCode());
    }

    @Test
    void aBusyDatabaseGivesAReadable503AndStoresNothing() throws Exception {
        String t = join("Pat");
        JsonNode item = json(call("GET", "/api/studies/ab/next", t, null, null));
        long before = store.voteCount();
        // another process holds SQLite's write lock past the store's busy timeout
        try (java.sql.Connection other = java.sql.DriverManager.getConnection("jdbc:sqlite:" + dir.resolve("eval.db"));
             java.sql.Statement st = other.createStatement()) {
            st.execute("BEGIN EXCLUSIVE");
            HttpResponse<String> r = call("POST", "/api/votes", t, "{\"item\":\"" + item.get("id").asText() + "\",\"choice\":\"left\"}", null);
            assertEquals(503, r.statusCode(), r.body());
            assertTrue(r.body().contains("busy") && !r.body().contains("SQLITE"), "readable, without the driver's words: " + r.body());
            assertEquals("2", r.headers().firstValue("Retry-After").orElse(""));
            st.execute("ROLLBACK");
        }
        assertEquals(before, store.voteCount(), "nothing stored");
        assertEquals(201, call("POST", "/api/votes", t, "{\"item\":\"" + item.get("id").asText() + "\",\"choice\":\"left\"}", null).statusCode(),
            "the retry goes through");
    }
}
