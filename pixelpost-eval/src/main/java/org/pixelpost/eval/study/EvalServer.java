package org.pixelpost.eval.study;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.javalin.Javalin;
import io.javalin.http.Context;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Map;
import java.util.Set;

/**
 * The annotation web app: annotators join with a name (or open an invitation link), take items
 * they have not seen until each item has its quota of distinct annotators, and vote. Model names
 * never reach the browser; votes are only readable through the admin token.
 */
public final class EvalServer implements AutoCloseable {
    static final Map<String, String> DEFINITIONS = Map.of(
        "flaws", "Which image has fewer visual flaws? Major flaws: distorted shapes, broken or merged parts, missing pieces. "
            + "Minor flaws: smudges, jagged or blurry edges, stray pixels, noise.",
        "appeal", "Which image is more visually appealing: cleaner, crisper, more pleasing to look at? Reject the pair "
            + "if one image is photo-real and the other stylised.");
    static final Set<String> CHOICES = Set.of("left", "tie", "right", "reject");

    /**
     * Who may join and how: {@code openJoin} true lets anyone join with a name, false only invited
     * annotators, null decides by the store (invitation-only once invitations exist); at most
     * {@code maxJoins} self-joined annotators, at most {@code joinsPerMinute} joins per client address;
     * {@code publicUrl} makes invitation links absolute.
     */
    public record Options(Boolean openJoin, int maxJoins, int joinsPerMinute, String publicUrl) {
        public static Options defaults() {
            return new Options(null, 1000, 20, null);
        }
    }

    /** Request bodies are small JSON objects; anything larger is refused before it is read. */
    static final int MAX_BODY = 16 * 1024;

    private final StudyStore store;
    private final String adminToken;
    private final Options options;
    private final Javalin app;
    private final Map<String, java.util.ArrayDeque<Long>> joinsByAddress = new java.util.concurrent.ConcurrentHashMap<>();

    public EvalServer(StudyStore store, String adminToken) {
        this(store, adminToken, Options.defaults());
    }

    public EvalServer(StudyStore store, String adminToken, Options options) {
        this.store = store;
        this.adminToken = adminToken;
        this.options = options;
        this.app = Javalin.create(c -> c.showJavalinBanner = false);
        app.exception(Exception.class, (e, ctx) -> {
            if (busy(e)) { // SQLite's single writer: another write held the lock past the busy timeout
                ctx.header("Retry-After", "2");
                error(ctx, 503, "the database is busy; nothing was stored, please try again in a moment");
            } else {
                error(ctx, 500, "server error: " + e.getMessage());
            }
        });
        app.get("/", ctx -> page(ctx, "index.html"));
        app.get("/instructions", ctx -> page(ctx, "instructions.html"));
        app.post("/api/join", this::join);
        app.get("/api/me", ctx -> {
            String name = annotator(ctx);
            if (name != null) json(ctx, 200, StudyStore.JSON.createObjectNode().put("name", name));
        });
        app.get("/api/studies", this::studies);
        app.get("/api/studies/{study}/next", this::next);
        app.get("/api/studies/{study}/progress", this::progress);
        app.post("/api/studies/{study}/lease", this::renew);
        app.post("/api/votes", this::vote);
        app.get("/images/{id}", this::image);
        app.post("/api/admin/invite", ctx -> {
            if (!admin(ctx)) return;
            String name = name(ctx);
            if (name == null) return;
            String token = store.invite(name);
            json(ctx, 201, StudyStore.JSON.createObjectNode().put("name", name).put("token", token).put("link", link(options.publicUrl(), token)));
        });
        app.post("/api/admin/studies/{study}/close", ctx -> {
            if (!admin(ctx) || !studyExists(ctx)) return;
            store.close(ctx.pathParam("study"));
            json(ctx, 200, StudyStore.JSON.createObjectNode().put("closed", ctx.pathParam("study")));
        });
        app.get("/api/admin/studies/{study}/results", ctx -> {
            if (!admin(ctx) || !studyExists(ctx)) return;
            json(ctx, 200, StudyResults.compute(store, ctx.pathParam("study")));
        });
        app.get("/api/admin/studies/{study}/export", ctx -> {
            if (!admin(ctx) || !studyExists(ctx)) return;
            ArrayNode all = StudyStore.JSON.createArrayNode();
            store.answers(ctx.pathParam("study")).forEach((item, votes) -> {
                ObjectNode o = all.addObject();
                o.put("item", item.id()).set("payload", item.payload());
                o.putArray("answers").addAll(votes);
            });
            json(ctx, 200, all);
        });
    }

    /** A database that stayed locked past its busy timeout (SQLite's SQLITE_BUSY / "database is locked"). */
    static boolean busy(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = String.valueOf(t.getMessage());
            if (m.contains("SQLITE_BUSY") || m.contains("database is locked")) return true;
        }
        return false;
    }

    public EvalServer start(String host, int port) {
        app.start(host, port);
        return this;
    }

    public int port() {
        return app.port();
    }

    @Override
    public void close() {
        app.stop();
    }

    private void page(Context ctx, String name) throws IOException {
        try (InputStream in = EvalServer.class.getResourceAsStream("/org/pixelpost/eval/" + name)) {
            ctx.contentType("text/html; charset=utf-8").result(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
    }

    /** The {@code name} of the request body, or null after answering 400. */
    private static String name(Context ctx) {
        JsonNode b = body(ctx);
        if (b == null) return null;
        String name = b.path("name").asText("").strip();
        if (name.isEmpty() || name.length() > 100) {
            error(ctx, 400, "name must be 1 to 100 characters");
            return null;
        }
        return name;
    }

    /** An invitation link: absolute under {@code publicUrl} when there is one. */
    public static String link(String publicUrl, String token) {
        String base = publicUrl == null || publicUrl.isBlank() ? "" : publicUrl.replaceAll("/+$", "");
        return base + "/?token=" + token;
    }

    private void join(Context ctx) throws Exception {
        long[] counts = store.joinCounts();
        boolean open = options.openJoin() != null ? options.openJoin() : counts[0] == 0;
        if (!open) {
            error(ctx, 403, "this server is by invitation: open the link the organiser sent you");
            return;
        }
        if (counts[1] >= options.maxJoins()) {
            error(ctx, 403, "the number of annotators is full (" + options.maxJoins() + ")");
            return;
        }
        if (!joinAllowed(ctx.ip())) {
            ctx.header("Retry-After", "60");
            error(ctx, 429, "too many joins from this address; wait a minute");
            return;
        }
        String name = name(ctx);
        if (name == null) return;
        String token = store.join(name);
        json(ctx, 201, StudyStore.JSON.createObjectNode().put("name", name).put("token", token));
    }

    private void studies(Context ctx) throws Exception {
        if (annotator(ctx) == null) return;
        ArrayNode a = StudyStore.JSON.createArrayNode();
        for (StudyStore.Study s : store.studies())
            if (!s.closed()) a.addObject().put("name", s.name()).put("kind", s.kind().name().toLowerCase());
        json(ctx, 200, a);
    }

    private void next(Context ctx) throws Exception {
        String name = annotator(ctx);
        if (name == null || !studyExists(ctx)) return;
        StudyStore.Item it = store.next(ctx.pathParam("study"), token(ctx));
        if (it == null) {
            json(ctx, 200, StudyStore.JSON.createObjectNode().put("done", true));
            return;
        }
        json(ctx, 200, view(store.study(it.study()).kind(), it, swapped(token(ctx), it.id())));
    }

    /**
     * Whether this annotator sees an A/B item's stored sides exchanged: drawn per (annotator, item),
     * so a model's side carries no pattern across annotators or items. Votes are stored in the
     * item's own orientation.
     */
    static boolean swapped(String annotator, String item) {
        return (StudyStore.draw(annotator, item, "sides") & 1) == 1;
    }

    /** What the browser sees of an item: image URLs and the question, never a model or a path. */
    static ObjectNode view(StudyStore.Kind kind, StudyStore.Item it, boolean swap) {
        ObjectNode p = it.payload(), v = StudyStore.JSON.createObjectNode();
        v.put("id", it.id()).put("kind", kind.name().toLowerCase());
        switch (kind) {
            case AB -> {
                String q = p.get("question").asText();
                String left = "/images/" + p.get("left").get("image").asText(), right = "/images/" + p.get("right").get("image").asText();
                v.put("question", q).put("definition", DEFINITIONS.get(q)).put("left", swap ? right : left).put("right", swap ? left : right);
            }
            case ALIGNMENT -> {
                v.put("prompt", p.get("prompt").asText()).put("image", "/images/" + p.get("image").get("image").asText());
                v.set("questions", p.get("questions"));
            }
            case PAIRS -> {
                v.put("prompt", p.get("prompt").asText());
                ArrayNode imgs = v.putArray("images");
                p.get("images").forEach(i -> imgs.add("/images/" + i.get("image").asText()));
            }
        }
        return v;
    }

    private void progress(Context ctx) throws Exception {
        if (annotator(ctx) == null || !studyExists(ctx)) return;
        StudyStore.Study s = store.study(ctx.pathParam("study"));
        Map<String, Integer> p = store.progress(s.name(), token(ctx));
        ObjectNode o = StudyStore.JSON.createObjectNode();
        p.forEach(o::put);
        o.put("quota", s.annotatorsPerItem()).put("needed", p.get("items") * s.annotatorsPerItem());
        json(ctx, 200, o);
    }

    private void vote(Context ctx) throws Exception {
        if (annotator(ctx) == null) return;
        JsonNode b = body(ctx);
        if (b == null) return;
        String itemId = b.path("item").asText("");
        StudyStore.Item it = itemId.isEmpty() ? null : store.item(itemId);
        if (it == null) {
            error(ctx, 404, "unknown item");
            return;
        }
        StudyStore.Kind kind = store.study(it.study()).kind();
        ObjectNode answer = StudyStore.JSON.createObjectNode();
        String problem = switch (kind) {
            case AB -> {
                String c = b.path("choice").asText("");
                if (!CHOICES.contains(c)) yield "choice must be one of left, tie, right, reject";
                // the stored orientation: the sides this annotator saw exchanged are exchanged back
                if (swapped(token(ctx), itemId)) c = c.equals("left") ? "right" : c.equals("right") ? "left" : c;
                answer.put("choice", c);
                yield null;
            }
            case ALIGNMENT -> {
                JsonNode a = b.path("answers");
                int n = it.payload().get("questions").size();
                if (!a.isArray() || a.size() != n) yield "answers must be " + n + " booleans, one per question";
                for (JsonNode x : a) if (!x.isBoolean()) yield "answers must be booleans";
                answer.set("answers", a);
                yield null;
            }
            case PAIRS -> {
                int n = it.payload().get("images").size();
                JsonNode best = b.path("best"), worst = b.path("worst");
                if (!best.isInt() || !worst.isInt() || best.asInt() < 0 || worst.asInt() < 0 || best.asInt() >= n || worst.asInt() >= n)
                    yield "best and worst must be image indices 0.." + (n - 1);
                if (best.asInt() == worst.asInt()) yield "best and worst must differ";
                answer.put("best", best.asInt()).put("worst", worst.asInt());
                yield null;
            }
        };
        if (problem != null) {
            error(ctx, 400, problem);
            return;
        }
        switch (store.vote(itemId, token(ctx), answer)) {
            case STORED -> json(ctx, 201, StudyStore.JSON.createObjectNode().put("stored", true));
            case DUPLICATE -> error(ctx, 409, "already voted on this item");
            case CLOSED -> error(ctx, 409, "the study is closed");
            case UNKNOWN_ITEM -> error(ctx, 404, "unknown item");
            case NOT_LEASED -> error(ctx, 409, "this item was not given to you: take items from /next");
            case FULL -> error(ctx, 409, "this item got its votes while your page was away; here is the next one");
        }
    }

    /** The page renews its item's lease while it is open, so nobody else is given that place of the quota. */
    private void renew(Context ctx) throws Exception {
        if (annotator(ctx) == null || !studyExists(ctx)) return;
        JsonNode b = body(ctx);
        if (b == null) return;
        boolean held = store.renew(b.path("item").asText(""), token(ctx));
        if (held) json(ctx, 200, StudyStore.JSON.createObjectNode().put("renewed", true));
        else error(ctx, 409, "you hold no lease on this item");
    }

    private void image(Context ctx) throws Exception {
        String path = store.imagePath(ctx.pathParam("id"));
        if (path == null || !Files.isRegularFile(Path.of(path))) {
            error(ctx, 404, "no such image");
            return;
        }
        ctx.contentType("image/png").header("Cache-Control", "private, max-age=3600").result(Files.readAllBytes(Path.of(path)));
    }

    private static String token(Context ctx) {
        String t = ctx.header("X-Annotator-Token");
        return t == null || t.isBlank() ? null : t.strip();
    }

    /** The annotator's name, or null after answering 401. */
    private String annotator(Context ctx) throws Exception {
        String name = store.annotatorName(token(ctx));
        if (name == null) error(ctx, 401, "join first: no or unknown annotator token (header X-Annotator-Token)");
        return name;
    }

    private boolean admin(Context ctx) throws Exception {
        String h = ctx.header("Authorization");
        String given = h != null && h.startsWith("Bearer ") ? h.substring(7).strip() : "";
        // constant-time comparison: the token is a secret
        if (adminToken == null || !MessageDigest.isEqual(given.getBytes(StandardCharsets.UTF_8), adminToken.getBytes(StandardCharsets.UTF_8))) {
            error(ctx, 401, "admin token required (Authorization: Bearer TOKEN)");
            return false;
        }
        return true;
    }

    private boolean studyExists(Context ctx) throws Exception {
        if (store.study(ctx.pathParam("study")) != null) return true;
        error(ctx, 404, "no study named '" + ctx.pathParam("study") + "'");
        return false;
    }

    /** At most {@code joinsPerMinute} joins per address in any minute. */
    private boolean joinAllowed(String address) {
        long now = System.currentTimeMillis();
        java.util.ArrayDeque<Long> q = joinsByAddress.computeIfAbsent(address, a -> new java.util.ArrayDeque<>());
        synchronized (q) {
            while (!q.isEmpty() && q.peekFirst() < now - 60_000) q.pollFirst();
            if (q.size() >= options.joinsPerMinute()) return false;
            q.addLast(now);
            return true;
        }
    }

    private static final com.fasterxml.jackson.databind.ObjectReader STRICT = StudyStore.JSON.readerFor(JsonNode.class)
        .with(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    /**
     * The request body as a JSON object, or null after answering: 413 past {@link #MAX_BODY} bytes
     * (declared or streamed: a chunked body is read only up to the limit), 400 for anything but
     * exactly one JSON object.
     */
    private static JsonNode body(Context ctx) {
        byte[] bytes;
        try {
            long declared = ctx.req().getContentLengthLong();
            if (declared > MAX_BODY) {
                error(ctx, 413, "request body over " + MAX_BODY + " bytes");
                return null;
            }
            bytes = ctx.req().getInputStream().readNBytes(MAX_BODY + 1);
            if (bytes.length > MAX_BODY) {
                error(ctx, 413, "request body over " + MAX_BODY + " bytes");
                return null;
            }
        } catch (IOException e) {
            error(ctx, 400, "unreadable request body");
            return null;
        }
        try {
            JsonNode b = STRICT.readTree(new String(bytes, StandardCharsets.UTF_8));
            if (b == null || !b.isObject()) {
                error(ctx, 400, "the body must be a JSON object");
                return null;
            }
            return b;
        } catch (IOException e) {
            error(ctx, 400, "malformed JSON (exactly one JSON object is expected)");
            return null;
        }
    }

    static void json(Context ctx, int status, JsonNode body) {
        ctx.status(status).contentType("application/json").result(body.toString());
    }

    static void error(Context ctx, int status, String message) {
        json(ctx, status, StudyStore.JSON.createObjectNode().put("error", message));
    }
}
