package org.pixelpost.eval.study;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A study's results. Each item is decided by the majority of its annotators: the answer with
 * strictly the most votes; when the top count is shared there is no majority and the item counts
 * as a tie (A/B), as "no" (alignment) or is left out (pairs). Items that the majority rejected
 * (one photo-real, one stylised) are left out. Shares carry Wilson 95% intervals; agreement is
 * Fleiss' kappa over items with at least two answers.
 */
public final class StudyResults {
    private StudyResults() {}

    /** The answer with strictly the most votes, or null. */
    static String majority(List<String> answers) {
        Map<String, Integer> c = new LinkedHashMap<>();
        for (String a : answers) c.merge(a, 1, Integer::sum);
        String best = null;
        int top = 0;
        boolean shared = false;
        for (Map.Entry<String, Integer> e : c.entrySet()) {
            if (e.getValue() > top) {
                top = e.getValue();
                best = e.getKey();
                shared = false;
            } else if (e.getValue() == top) {
                shared = true;
            }
        }
        return shared ? null : best;
    }

    /** Wilson score interval for k of n at 95%. */
    static double[] wilson(int k, int n) {
        if (n == 0) return new double[] {0, 0};
        double z = 1.959964, p = (double) k / n, d = 1 + z * z / n;
        double c = (p + z * z / (2 * n)) / d, h = z * Math.sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / d;
        return new double[] {Math.max(0, c - h), Math.min(1, c + h)};
    }

    /** Fleiss' kappa over items, each a list of categorical answers (items with fewer than two are skipped). */
    static double fleissKappa(List<List<String>> items) {
        Map<String, Integer> totals = new LinkedHashMap<>();
        double sumP = 0;
        int used = 0, ratings = 0;
        for (List<String> it : items) {
            int n = it.size();
            if (n < 2) continue;
            Map<String, Integer> c = new LinkedHashMap<>();
            for (String a : it) c.merge(a, 1, Integer::sum);
            double agree = 0;
            for (int v : c.values()) agree += (double) v * (v - 1);
            sumP += agree / ((double) n * (n - 1));
            c.forEach((k, v) -> totals.merge(k, v, Integer::sum));
            ratings += n;
            used++;
        }
        if (used == 0) return Double.NaN;
        double pBar = sumP / used, pe = 0;
        for (int v : totals.values()) pe += Math.pow((double) v / ratings, 2);
        return pe == 1 ? 1 : (pBar - pe) / (1 - pe);
    }

    public static ObjectNode compute(StudyStore store, String studyName) throws SQLException {
        return compute(store, studyName, false, 0.7);
    }

    /**
     * The results; with gold items, a per-annotator quality table (gold accuracy, votes, median
     * seconds between votes) flags annotators below {@code minGoldAccuracy} (with at least three
     * gold answers), and {@code excludeFlagged} leaves their votes out of every table.
     */
    public static ObjectNode compute(StudyStore store, String studyName, boolean excludeFlagged, double minGoldAccuracy) throws SQLException {
        StudyStore.Study study = store.study(studyName);
        if (study == null) throw new IllegalArgumentException("no study named '" + studyName + "'");
        Map<StudyStore.Item, List<JsonNode>> answers = store.answers(studyName);
        List<StudyStore.Vote> votes = store.votes(studyName);
        Map<String, StudyStore.Item> byId = new LinkedHashMap<>();
        answers.keySet().forEach(i -> byId.put(i.id(), i));
        java.util.Set<String> flagged = new java.util.HashSet<>();
        Map<String, String> names = new LinkedHashMap<>();
        for (StudyStore.Vote v : votes) if (!names.containsKey(v.annotator())) names.put(v.annotator(), store.annotatorName(v.annotator()));
        ObjectNode quality = quality(byId, votes, minGoldAccuracy, names, flagged);
        if (excludeFlagged && !flagged.isEmpty()) {
            Map<StudyStore.Item, List<JsonNode>> kept = new LinkedHashMap<>();
            answers.keySet().forEach(i -> kept.put(i, new ArrayList<>()));
            for (StudyStore.Vote v : votes) if (!flagged.contains(v.annotator())) kept.get(byId.get(v.item())).add(v.answer());
            answers = kept;
        }
        // gold items measure the annotators, not the models
        Map<StudyStore.Item, List<JsonNode>> real = new LinkedHashMap<>();
        answers.forEach((i, a) -> { if (!i.payload().has("gold") && !i.payload().has("repeat_of")) real.put(i, a); });
        answers = real;
        ObjectNode out = StudyStore.JSON.createObjectNode();
        out.put("study", studyName).put("kind", study.kind().name().toLowerCase()).put("annotators_per_item", study.annotatorsPerItem())
            .put("items", answers.size()).put("votes", answers.values().stream().mapToInt(List::size).sum())
            .put("majority_rule", "per item, the answer with strictly the most votes; a shared top count is no majority: a tie (A/B), "
                + "\"no\" (alignment), left out (pairs); items the majority rejected are left out");
        switch (study.kind()) {
            case AB -> ab(answers, out);
            case ALIGNMENT -> alignment(answers, out);
            case PAIRS -> pairs(answers, out);
        }
        if (quality.path("gold_items").asInt() > 0 || quality.path("repeated_items").asInt() > 0) {
            out.set("quality", quality);
            out.put("excluded_flagged", excludeFlagged);
        }
        return out;
    }

    /**
     * Per annotator (name and the first characters of the token, never the whole secret): gold
     * answers and accuracy, votes, median seconds between consecutive votes, and the flag; the
     * flagged annotators' tokens go into {@code flagged}.
     */
    static ObjectNode quality(Map<String, StudyStore.Item> items, List<StudyStore.Vote> votes, double minGoldAccuracy, Map<String, String> names,
                              java.util.Set<String> flagged) {
        ObjectNode q = StudyStore.JSON.createObjectNode();
        q.put("gold_items", items.values().stream().filter(i -> i.payload().has("gold")).count()).put("min_gold_accuracy", minGoldAccuracy);
        q.put("repeated_items", items.values().stream().filter(i -> i.payload().has("repeat_of")).count());
        Map<String, List<StudyStore.Vote>> by = new LinkedHashMap<>();
        for (StudyStore.Vote v : votes) by.computeIfAbsent(v.annotator(), k -> new ArrayList<>()).add(v);
        ArrayNode rows = q.putArray("annotators");
        by.forEach((who, vs) -> {
            int gold = 0, right = 0;
            List<Double> gaps = new ArrayList<>();
            for (int i = 0; i < vs.size(); i++) {
                StudyStore.Item it = items.get(vs.get(i).item());
                if (it != null && it.payload().has("gold")) {
                    gold++;
                    if (it.payload().get("gold").asText().equals(vs.get(i).answer().path("choice").asText())) right++;
                }
                if (i > 0) gaps.add((vs.get(i).created().toEpochMilli() - vs.get(i - 1).created().toEpochMilli()) / 1000.0);
            }
            gaps.sort(null);
            // self-consistency: the same comparison answered twice (once as a repeated item) gets the same model, or tie both times
            Map<String, String> first = new LinkedHashMap<>(), again = new LinkedHashMap<>();
            for (StudyStore.Vote v : vs) {
                StudyStore.Item it = items.get(v.item());
                if (it == null || it.payload().has("gold") || !it.payload().has("left")) continue;
                String c = v.answer().path("choice").asText();
                String picked = c.equals("left") || c.equals("right") ? it.payload().get(c).get("model").asText() : c;
                if (it.payload().has("repeat_of")) again.put(it.payload().get("repeat_of").asText(), picked);
                else first.put(Studies.comparisonKey(it.payload()), picked);
            }
            int pairs = 0, same = 0;
            for (Map.Entry<String, String> e : again.entrySet())
                if (first.containsKey(e.getKey())) {
                    pairs++;
                    if (first.get(e.getKey()).equals(e.getValue())) same++;
                }
            ObjectNode r = rows.addObject().put("annotator", names.getOrDefault(who, "?")).put("id", who.substring(0, Math.min(6, who.length())))
                .put("votes", vs.size()).put("gold_answered", gold).put("gold_correct", right);
            if (gold > 0) r.put("gold_accuracy", (double) right / gold);
            r.put("repeats_answered", pairs);
            if (pairs > 0) r.put("self_consistency", (double) same / pairs);
            if (!gaps.isEmpty()) r.put("median_seconds_between_votes", gaps.get(gaps.size() / 2));
            boolean flag = gold >= 3 && (double) right / gold < minGoldAccuracy;
            r.put("flagged", flag);
            if (flag) flagged.add(who);
        });
        return q;
    }

    private static void ab(Map<StudyStore.Item, List<JsonNode>> answers, ObjectNode out) {
        // per (A, B) pair of models: for each question, counts of A wins / tie / B wins
        Map<String, int[]> counts = new LinkedHashMap<>(), perPrompt = new LinkedHashMap<>();
        Map<String, List<Outcome>> decided = new LinkedHashMap<>();
        List<List<String>> forKappa = new ArrayList<>();
        int rejected = 0, unanswered = 0;
        for (Map.Entry<StudyStore.Item, List<JsonNode>> e : answers.entrySet()) {
            ObjectNode p = e.getKey().payload();
            List<String> votes = e.getValue().stream().map(a -> a.path("choice").asText()).toList();
            if (votes.isEmpty()) {
                unanswered++;
                continue;
            }
            forKappa.add(votes);
            String left = p.get("left").get("model").asText(), right = p.get("right").get("model").asText();
            boolean leftIsA = left.compareTo(right) <= 0;
            String a = leftIsA ? left : right, b = leftIsA ? right : left;
            String m = majority(votes);
            if ("reject".equals(m)) {
                rejected++;
                continue;
            }
            int[] c = counts.computeIfAbsent(a + "\u0000" + b + "\u0000" + p.get("question").asText(), k -> new int[3]);
            int outcome = m == null || m.equals("tie") ? 1 : m.equals("left") == leftIsA ? 0 : 2;
            c[outcome]++;
            perPrompt.computeIfAbsent(p.get("prompt").asText() + "\u0000" + a + "\u0000" + b + "\u0000" + p.get("question").asText(), k -> new int[3])[outcome]++;
            decided.computeIfAbsent(p.get("question").asText(), k -> new ArrayList<>()).add(new Outcome(a, b, outcome));
        }
        ArrayNode rows = out.putArray("pairs");
        Map<String, ObjectNode> byPair = new LinkedHashMap<>();
        counts.forEach((k, c) -> {
            String[] parts = k.split("\u0000");
            ObjectNode row = byPair.computeIfAbsent(parts[0] + "\u0000" + parts[1], x -> {
                ObjectNode r = rows.addObject();
                r.put("model_a", parts[0]).put("model_b", parts[1]);
                return r;
            });
            int n = c[0] + c[1] + c[2];
            ObjectNode q = row.putObject(parts[2]);
            q.put("n", n);
            String[] names = {"a_wins", "tie", "b_wins"};
            for (int i = 0; i < 3; i++) {
                ObjectNode s = q.putObject(names[i]);
                double[] ci = wilson(c[i], n);
                s.put("count", c[i]).put("share", n == 0 ? 0 : (double) c[i] / n).put("ci95_low", ci[0]).put("ci95_high", ci[1]);
            }
        });
        ArrayNode byPrompt = out.putArray("per_prompt");
        perPrompt.forEach((k, c) -> {
            String[] parts = k.split("\u0000");
            byPrompt.addObject().put("prompt", parts[0]).put("model_a", parts[1]).put("model_b", parts[2]).put("question", parts[3])
                .put("a_wins", c[0]).put("tie", c[1]).put("b_wins", c[2]);
        });
        // more than two models: a Bradley-Terry ranking per question, with bootstrap intervals over items
        java.util.Set<String> models = new java.util.TreeSet<>();
        decided.values().forEach(l -> l.forEach(o -> { models.add(o.a()); models.add(o.b()); }));
        if (models.size() > 2) {
            ObjectNode bt = out.putObject("bradley_terry");
            decided.forEach((question, outcomes) -> bt.set(question, ranking(new ArrayList<>(models), outcomes, 1000, 0xB7L)));
        }
        out.put("rejected_items", rejected).put("unanswered_items", unanswered);
        out.put("fleiss_kappa", fleissKappa(forKappa));
    }

    /** One decided A/B item: models a and b (a before b by name) and 0 (a won), 1 (tie) or 2 (b won). */
    record Outcome(String a, String b, int result) {}

    /**
     * Bradley-Terry log-strengths (mean 0) of {@code models} from {@code outcomes}, a tie counting
     * half a win each way, fitted by Hunter's minorise-maximise iteration; a win count of zero is
     * smoothed by half a win against every other model so the fit stays finite.
     */
    static double[] bradleyTerry(List<String> models, List<Outcome> outcomes) {
        int k = models.size();
        Map<String, Integer> index = new LinkedHashMap<>();
        for (int i = 0; i < k; i++) index.put(models.get(i), i);
        double[][] wins = new double[k][k];
        for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) if (i != j) wins[i][j] = 0.5 / (k - 1); // smoothing
        for (Outcome o : outcomes) {
            int a = index.get(o.a()), b = index.get(o.b());
            if (o.result() == 0) wins[a][b] += 1;
            else if (o.result() == 2) wins[b][a] += 1;
            else { wins[a][b] += 0.5; wins[b][a] += 0.5; }
        }
        double[] p = new double[k];
        java.util.Arrays.fill(p, 1);
        for (int iter = 0; iter < 1000; iter++) {
            double[] next = new double[k];
            double change = 0;
            for (int i = 0; i < k; i++) {
                double w = 0, d = 0;
                for (int j = 0; j < k; j++) {
                    if (i == j) continue;
                    w += wins[i][j];
                    d += (wins[i][j] + wins[j][i]) / (p[i] + p[j]);
                }
                next[i] = w / d;
            }
            double logMean = 0;
            for (double x : next) logMean += Math.log(x) / k;
            for (int i = 0; i < k; i++) {
                next[i] /= Math.exp(logMean);
                change = Math.max(change, Math.abs(Math.log(next[i] / p[i])));
            }
            p = next;
            if (change < 1e-10) break;
        }
        double[] theta = new double[k];
        for (int i = 0; i < k; i++) theta[i] = Math.log(p[i]);
        return theta;
    }

    /** The ranking, strongest first: log-strength and a percentile-bootstrap 95% interval over items. */
    static ArrayNode ranking(List<String> models, List<Outcome> outcomes, int draws, long seed) {
        double[] theta = bradleyTerry(models, outcomes);
        double[][] boot = new double[models.size()][draws];
        java.util.Random rnd = new java.util.Random(seed);
        for (int d = 0; d < draws; d++) {
            List<Outcome> sample = new ArrayList<>(outcomes.size());
            for (int i = 0; i < outcomes.size(); i++) sample.add(outcomes.get(rnd.nextInt(outcomes.size())));
            double[] t = bradleyTerry(models, sample);
            for (int m = 0; m < models.size(); m++) boot[m][d] = t[m];
        }
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < models.size(); i++) order.add(i);
        order.sort((x, y) -> Double.compare(theta[y], theta[x]));
        ArrayNode out = StudyStore.JSON.createArrayNode();
        for (int i : order) {
            double[] b = boot[i].clone();
            java.util.Arrays.sort(b);
            out.addObject().put("model", models.get(i)).put("log_strength", theta[i])
                .put("ci95_low", b[(int) Math.floor(0.025 * (draws - 1))]).put("ci95_high", b[(int) Math.ceil(0.975 * (draws - 1))]);
        }
        return out;
    }

    private static void alignment(Map<StudyStore.Item, List<JsonNode>> answers, ObjectNode out) {
        Map<String, int[]> perModel = new LinkedHashMap<>();
        List<List<String>> forKappa = new ArrayList<>();
        for (Map.Entry<StudyStore.Item, List<JsonNode>> e : answers.entrySet()) {
            ObjectNode p = e.getKey().payload();
            String model = p.get("image").get("model").asText();
            int nq = p.get("questions").size();
            if (e.getValue().isEmpty()) continue;
            for (int q = 0; q < nq; q++) {
                List<String> votes = new ArrayList<>();
                for (JsonNode a : e.getValue()) votes.add(a.path("answers").path(q).asBoolean() ? "yes" : "no");
                forKappa.add(votes);
                int[] c = perModel.computeIfAbsent(model, k -> new int[2]);
                if ("yes".equals(majority(votes))) c[0]++;
                c[1]++;
            }
        }
        ObjectNode rates = out.putObject("alignment");
        perModel.forEach((m, c) -> {
            double[] ci = wilson(c[0], c[1]);
            rates.putObject(m).put("yes", c[0]).put("questions", c[1]).put("rate", c[1] == 0 ? 0 : (double) c[0] / c[1])
                .put("ci95_low", ci[0]).put("ci95_high", ci[1]);
        });
        out.put("fleiss_kappa", fleissKappa(forKappa));
    }

    private static void pairs(Map<StudyStore.Item, List<JsonNode>> answers, ObjectNode out) {
        ArrayNode pairs = out.putArray("preference_pairs");
        List<List<String>> forKappa = new ArrayList<>();
        for (Map.Entry<StudyStore.Item, List<JsonNode>> e : answers.entrySet()) {
            if (e.getValue().isEmpty()) continue;
            List<String> best = e.getValue().stream().map(a -> a.path("best").asText()).toList();
            List<String> worst = e.getValue().stream().map(a -> a.path("worst").asText()).toList();
            forKappa.add(best);
            String b = majority(best), w = majority(worst);
            if (b == null || w == null || b.equals(w)) continue;
            ObjectNode p = e.getKey().payload();
            pairs.addObject().put("prompt", p.get("prompt").asText())
                .put("winner", p.get("images").get(Integer.parseInt(b)).get("file").asText())
                .put("loser", p.get("images").get(Integer.parseInt(w)).get("file").asText());
        }
        out.put("fleiss_kappa_best", fleissKappa(forKappa));
    }
}
