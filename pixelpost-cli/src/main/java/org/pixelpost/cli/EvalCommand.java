package org.pixelpost.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.eval.study.EvalServer;
import org.pixelpost.eval.study.StudyResults;
import org.pixelpost.eval.study.StudyStore;
import org.pixelpost.eval.study.Studies;
import org.pixelpost.io.AtomicFiles;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true,
    description = "Human evaluation: blind A/B, text alignment and pair-picking studies served as a web app.",
    subcommands = {EvalCommand.Study.class, EvalCommand.Serve.class, EvalCommand.Results.class, EvalCommand.Invite.class, EvalCommand.Close.class})
final class EvalCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** Where the studies live: one SQLite file in the study folder, or a JDBC URL (PostgreSQL). */
    static final class Db {
        @Option(names = "--dir", defaultValue = "studies", description = "study folder (default: ${DEFAULT-VALUE}); the SQLite file is DIR/eval.db")
        Path dir;
        @Option(names = "--db", description = "JDBC URL instead, e.g. jdbc:postgresql://host/db?user=u&password=p")
        String url;

        StudyStore open() throws Exception {
            if (url != null) return new StudyStore(url);
            Files.createDirectories(dir);
            return new StudyStore("jdbc:sqlite:" + dir.resolve("eval.db"));
        }
    }

    @Command(name = "study", mixinStandardHelpOptions = true, description = "Manage studies.", subcommands = Create.class)
    static final class Study implements Runnable {
        @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

        @Override
        public void run() {
            spec.commandLine().usage(System.out);
        }
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
        description = {"Create a study from folders written by pixelpost sample (same prompts and seeds per model).",
            "ab: every pair of models, flaws and appeal; alignment: yes/no questions per prompt; pairs: pick best and worst."})
    static final class Create implements Callable<Integer> {
        @Mixin Db db;
        @Option(names = "--kind", required = true, description = "ab, alignment or pairs") String kind;
        @Option(names = "--name", required = true) String name;
        @Option(names = "--samples", required = true, paramLabel = "MODEL=DIR", description = "a model's sample folder (repeatable)")
        Map<String, Path> samples = new LinkedHashMap<>();
        @Option(names = "--prompts", description = "only these prompts (one per line)") Path prompts;
        @Option(names = "--questions", description = "alignment: prompt -> [questions] (JSON object, or JSON lines {prompt, questions})") Path questions;
        @Option(names = "--annotators", defaultValue = "5", description = "distinct annotators per item (default: ${DEFAULT-VALUE})") int annotators;
        @Option(names = "--seed", description = "seed of the stored left/right order (default: a random one, recorded in the study)") Long seed;
        @Option(names = "--gold-rate", defaultValue = "0", description = "A/B: add gold items (an image against a degraded copy of itself) "
            + "for this share of the samples, to measure each annotator's care (default: ${DEFAULT-VALUE})") double goldRate;
        @Option(names = "--gold-dir", description = "where the degraded copies go (default: DIR/gold/NAME)") Path goldDir;
        @Option(names = "--repeat-rate", defaultValue = "0", description = "A/B: show this share of the items a second time (sides exchanged) "
            + "to measure each annotator's self-consistency (default: ${DEFAULT-VALUE})") double repeatRate;

        @Override
        public Integer call() throws Exception {
            StudyStore.Kind k = switch (kind.toLowerCase()) {
                case "ab" -> StudyStore.Kind.AB;
                case "alignment" -> StudyStore.Kind.ALIGNMENT;
                case "pairs" -> StudyStore.Kind.PAIRS;
                default -> throw new IllegalArgumentException("--kind must be ab, alignment or pairs, got " + kind);
            };
            List<String> only = prompts == null ? null : SampleCommand.readPrompts(prompts);
            try (StudyStore store = db.open()) {
                long s = seed != null ? seed : new java.security.SecureRandom().nextLong();
                Path gold = goldRate == 0 ? null : goldDir != null ? goldDir : db.dir.resolve("gold").resolve(name.replaceAll("[^A-Za-z0-9._-]", "_"));
                int n = Studies.create(store, name, k, samples, questions, only, annotators, s, goldRate, repeatRate, gold);
                System.out.printf("study '%s' (%s): %d items, %d annotators each, seed %d, in %s%n", name, kind, n, annotators, s, store.url());
            }
            return 0;
        }
    }

    @Command(name = "serve", mixinStandardHelpOptions = true, description = "Serve the annotation web app.")
    static final class Serve implements Callable<Integer> {
        @Mixin Db db;
        @Option(names = "--port", defaultValue = "8080") int port;
        @Option(names = "--host", defaultValue = "127.0.0.1", description = "address to listen on (0.0.0.0 for every interface)") String host;
        @Option(names = "--admin-token", description = "token for admin actions (default: $PIXELPOST_ADMIN_TOKEN, else a random one, printed)")
        String adminToken;
        @Option(names = "--open-join", arity = "1", description = "true: anyone may join with a name; false: invitation links only "
            + "(default: invitation-only once invitations exist)") Boolean openJoin;
        @Option(names = "--max-joins", defaultValue = "1000", description = "at most this many annotators join on their own (default: ${DEFAULT-VALUE})") int maxJoins;
        @Option(names = "--joins-per-minute", defaultValue = "20", description = "joins allowed per client address per minute (default: ${DEFAULT-VALUE})")
        int joinsPerMinute;
        @Option(names = "--public-url", description = "the address annotators reach the server at, for absolute invitation links") String publicUrl;

        @Override
        public Integer call() throws Exception {
            String token = adminToken != null ? adminToken : System.getenv("PIXELPOST_ADMIN_TOKEN");
            if (token == null || token.isBlank()) token = StudyStore.randomId(16);
            StudyStore store = db.open();
            org.pixelpost.io.check.Checks.atLeast("--max-joins", maxJoins, 0);
            org.pixelpost.io.check.Checks.atLeast("--joins-per-minute", joinsPerMinute, 1);
            EvalServer server = new EvalServer(store, token, new EvalServer.Options(openJoin, maxJoins, joinsPerMinute, publicUrl)).start(host, port);
            System.out.printf("serving on http://%s:%d/  (admin token: %s)%n", host, server.port(), token);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                server.close();
                try {
                    store.close();
                } catch (Exception ignored) {
                    // closing on the way out
                }
            }));
            Thread.currentThread().join();
            return 0;
        }
    }

    @Command(name = "results", mixinStandardHelpOptions = true,
        description = {"Results in the paper's layout: per pair of models, A wins / tie / B wins for flaws and appeal, decided per item by",
            "majority (a shared top count is a tie), with 95% Wilson intervals; alignment rate per model; Fleiss' kappa."})
    static final class Results implements Callable<Integer> {
        @Mixin Db db;
        @Option(names = "--study", required = true) String study;
        @Option(names = "--json") boolean json;
        @Option(names = "--csv") boolean csv;
        @Option(names = "--pairs-out", description = "pairs studies: write pairs.jsonl for pixelpost train --objective dpo|simpo") Path pairsOut;
        @Option(names = "--exclude-flagged", description = "leave out the votes of annotators flagged by the gold items") boolean excludeFlagged;
        @Option(names = "--min-gold-accuracy", defaultValue = "0.7", description = "flag annotators below this accuracy on gold items (default: ${DEFAULT-VALUE})")
        double minGoldAccuracy;

        @Override
        public Integer call() throws Exception {
            org.pixelpost.io.check.Checks.inRange("--min-gold-accuracy", minGoldAccuracy, 0, 1);
            ObjectNode r;
            try (StudyStore store = db.open()) {
                r = StudyResults.compute(store, study, excludeFlagged, minGoldAccuracy);
            }
            if (pairsOut != null) {
                StringBuilder b = new StringBuilder();
                for (JsonNode p : r.path("preference_pairs")) b.append(p).append('\n');
                AtomicFiles.writeString(pairsOut, b.toString());
            }
            if (json) System.out.println(Json.write(r));
            else if (csv) System.out.print(csv(r));
            else System.out.print(text(r));
            return 0;
        }

        static String csv(ObjectNode r) {
            StringBuilder b = new StringBuilder();
            if (r.has("pairs")) {
                b.append("model_a,model_b,question,n,a_wins,tie,b_wins,a_wins_pct,tie_pct,b_wins_pct,"
                    + "a_wins_ci95_low,a_wins_ci95_high,tie_ci95_low,tie_ci95_high,b_wins_ci95_low,b_wins_ci95_high\n");
                for (JsonNode p : r.get("pairs"))
                    for (String q : List.of("flaws", "appeal"))
                        if (p.has(q)) {
                            JsonNode x = p.get(q);
                            b.append(String.format("%s,%s,%s,%d,%d,%d,%d,%.1f,%.1f,%.1f", p.get("model_a").asText(), p.get("model_b").asText(), q,
                                x.get("n").asInt(), x.get("a_wins").get("count").asInt(), x.get("tie").get("count").asInt(), x.get("b_wins").get("count").asInt(),
                                100 * x.get("a_wins").get("share").asDouble(), 100 * x.get("tie").get("share").asDouble(), 100 * x.get("b_wins").get("share").asDouble()));
                            for (String o : List.of("a_wins", "tie", "b_wins"))
                                b.append(String.format(",%.1f,%.1f", 100 * x.get(o).get("ci95_low").asDouble(), 100 * x.get(o).get("ci95_high").asDouble()));
                            b.append('\n');
                        }
            }
            if (r.has("bradley_terry")) {
                b.append("question,rank,model,log_strength,ci95_low,ci95_high\n");
                r.get("bradley_terry").fields().forEachRemaining(e -> {
                    int rank = 1;
                    for (JsonNode m : e.getValue())
                        b.append(String.format("%s,%d,%s,%.4f,%.4f,%.4f%n", e.getKey(), rank++, m.get("model").asText(), m.get("log_strength").asDouble(),
                            m.get("ci95_low").asDouble(), m.get("ci95_high").asDouble()));
                });
            }
            if (r.has("alignment")) {
                b.append("model,yes,questions,rate\n");
                r.get("alignment").fields().forEachRemaining(e -> b.append(String.format("%s,%d,%d,%.4f%n", e.getKey(),
                    e.getValue().get("yes").asInt(), e.getValue().get("questions").asInt(), e.getValue().get("rate").asDouble())));
            }
            if (r.has("preference_pairs")) {
                b.append("prompt,winner,loser\n");
                for (JsonNode p : r.get("preference_pairs")) b.append(String.format("\"%s\",%s,%s%n", p.get("prompt").asText().replace("\"", "\"\""),
                    p.get("winner").asText(), p.get("loser").asText()));
            }
            return b.toString();
        }

        static String text(ObjectNode r) {
            StringBuilder b = new StringBuilder(String.format("study %s (%s): %d items, %d votes, %d annotators per item%n",
                r.get("study").asText(), r.get("kind").asText(), r.get("items").asInt(), r.get("votes").asInt(), r.get("annotators_per_item").asInt()));
            if (r.has("pairs")) {
                b.append(String.format("%-16s %-16s | %-32s | %-32s%n", "Model A", "Model B", "Visual flaws: A wins / tie / B wins", "Visual appeal: A wins / tie / B wins"));
                for (JsonNode p : r.get("pairs")) {
                    b.append(String.format("%-16s %-16s", p.get("model_a").asText(), p.get("model_b").asText()));
                    for (String q : List.of("flaws", "appeal")) {
                        JsonNode x = p.path(q);
                        b.append(x.isMissingNode() ? String.format(" | %-32s", "-") : String.format(" | %5.1f%% / %5.1f%% / %5.1f%% (n=%d)",
                            100 * x.get("a_wins").get("share").asDouble(), 100 * x.get("tie").get("share").asDouble(), 100 * x.get("b_wins").get("share").asDouble(), x.get("n").asInt()));
                    }
                    b.append('\n');
                    for (String q : List.of("flaws", "appeal")) {
                        JsonNode x = p.path(q);
                        if (x.isMissingNode()) continue;
                        b.append(String.format("    %-6s 95%% Wilson: A wins %.1f-%.1f%%, tie %.1f-%.1f%%, B wins %.1f-%.1f%%%n", q,
                            100 * x.get("a_wins").get("ci95_low").asDouble(), 100 * x.get("a_wins").get("ci95_high").asDouble(),
                            100 * x.get("tie").get("ci95_low").asDouble(), 100 * x.get("tie").get("ci95_high").asDouble(),
                            100 * x.get("b_wins").get("ci95_low").asDouble(), 100 * x.get("b_wins").get("ci95_high").asDouble()));
                    }
                }
            }
            if (r.has("bradley_terry"))
                r.get("bradley_terry").fields().forEachRemaining(e -> {
                    b.append(String.format("Bradley-Terry ranking (%s), log-strength with bootstrap 95%% interval:%n", e.getKey()));
                    int rank = 1;
                    for (JsonNode m : e.getValue())
                        b.append(String.format("  %d. %-16s %+.3f (%+.3f to %+.3f)%n", rank++, m.get("model").asText(), m.get("log_strength").asDouble(),
                            m.get("ci95_low").asDouble(), m.get("ci95_high").asDouble()));
                });
            if (r.has("alignment"))
                r.get("alignment").fields().forEachRemaining(e -> b.append(String.format("text alignment %-16s %5.1f%% (95%% CI %.1f-%.1f%%, %d questions)%n", e.getKey(),
                    100 * e.getValue().get("rate").asDouble(), 100 * e.getValue().get("ci95_low").asDouble(), 100 * e.getValue().get("ci95_high").asDouble(),
                    e.getValue().get("questions").asInt())));
            if (r.has("preference_pairs")) b.append(String.format("%d preference pairs decided%n", r.get("preference_pairs").size()));
            r.fields().forEachRemaining(e -> {
                if (e.getKey().startsWith("fleiss_kappa")) b.append(String.format("inter-annotator agreement (%s): %.3f%n", e.getKey(), e.getValue().asDouble()));
            });
            if (r.has("quality")) {
                JsonNode q = r.get("quality");
                b.append(String.format("annotators (%d gold items; flagged below %.0f%% gold accuracy%s):%n", q.get("gold_items").asInt(),
                    100 * q.get("min_gold_accuracy").asDouble(), r.path("excluded_flagged").asBoolean() ? ", their votes left out" : ""));
                for (JsonNode a : q.get("annotators"))
                    b.append(String.format("  %-20s %s  votes %4d  gold %d/%d  self-consistency %s  median %.1f s%s%n", a.get("annotator").asText(),
                        a.get("id").asText(), a.get("votes").asInt(), a.get("gold_correct").asInt(), a.get("gold_answered").asInt(),
                        a.has("self_consistency") ? String.format("%.0f%% of %d", 100 * a.get("self_consistency").asDouble(), a.get("repeats_answered").asInt()) : "-",
                        a.path("median_seconds_between_votes").asDouble(Double.NaN), a.get("flagged").asBoolean() ? "  FLAGGED" : ""));
            }
            b.append("rule: ").append(r.get("majority_rule").asText()).append('\n');
            return b.toString();
        }
    }

    @Command(name = "invite", mixinStandardHelpOptions = true, description = "Create invitation links for named annotators.")
    static final class Invite implements Callable<Integer> {
        @Mixin Db db;
        @picocli.CommandLine.Parameters(arity = "1..*", paramLabel = "NAME") List<String> names;
        @Option(names = "--public-url", description = "the address annotators reach the server at, e.g. https://eval.example.org") String publicUrl;

        @Override
        public Integer call() throws Exception {
            try (StudyStore store = db.open()) {
                for (String n : names) System.out.printf("%s\t%s%n", n, EvalServer.link(publicUrl, store.invite(n)));
            }
            if (publicUrl == null) System.err.println("links are relative to the server's address; --public-url http://HOST:PORT makes them absolute");
            return 0;
        }
    }

    @Command(name = "close", mixinStandardHelpOptions = true, description = "Close a study: no more items are served, no more votes taken.")
    static final class Close implements Callable<Integer> {
        @Mixin Db db;
        @Option(names = "--study", required = true) String study;

        @Override
        public Integer call() throws Exception {
            try (StudyStore store = db.open()) {
                store.close(study);
            }
            System.out.println("closed " + study);
            return 0;
        }
    }
}
