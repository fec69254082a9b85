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
        StudyStore.Study study = store.study(studyName);
        if (study == null) throw new IllegalArgumentException("no study named '" + studyName + "'");
        Map<StudyStore.Item, List<JsonNode>> answers = store.answers(studyName);
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
        return out;
    }

    private static void ab(Map<StudyStore.Item, List<JsonNode>> answers, ObjectNode out) {
        // per (A, B) pair of models: for each question, counts of A wins / tie / B wins
        Map<String, int[]> counts = new LinkedHashMap<>();
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
            if (m == null || m.equals("tie")) c[1]++;
            else if (m.equals("left") == leftIsA) c[0]++;
            else c[2]++;
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
        out.put("rejected_items", rejected).put("unanswered_items", unanswered);
        out.put("fleiss_kappa", fleissKappa(forKappa));
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
