package org.pixelpost.demo;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.pixelpost.stats.PairedBootstrap;
import org.pixelpost.stats.PairedTable;
import org.pixelpost.io.AtomicFiles;

/** {@code report.html}: settings, metric tables with seed spreads, paired tables, samples with zoomed crops, loss curves. */
final class Report {
    static final double TIE_MARGIN = 0.05;
    private final StringBuilder h = new StringBuilder();

    private Report() {}

    /** What one regime's stages produced, for the report. */
    record RegimeResult(Demo.Regime regime, String headline, List<Demo.Arm> sft, List<Demo.Arm> pref, Map<String, JsonNode> metrics,
                        JsonNode sweep, JsonNode studies, JsonNode autoencoder) {
        List<Demo.Arm> arms() {
            List<Demo.Arm> all = new ArrayList<>(sft);
            all.addAll(pref);
            return all;
        }
    }

    static Path write(Path out, Plan plan, List<RegimeResult> regimes, Map<String, Double> stageSeconds, double totalSeconds) throws IOException {
        Report r = new Report();
        r.h.append("<!doctype html><html><head><meta charset=utf-8><title>PixelPost demo report</title><style>")
            .append("body{font:15px/1.45 system-ui,sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;margin:8px 0 16px}")
            .append("td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}")
            .append(".pix{image-rendering:pixelated}.zoom{width:128px;height:128px;overflow:hidden;display:inline-block;border:1px solid #999;margin:2px}")
            .append(".zoom img{width:256px;height:256px;margin:-64px 0 0 -64px;image-rendering:pixelated}.good{color:#070}.bad{color:#a00}.same{color:#777}")
            .append("figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}figcaption{font-size:13px;max-width:560px}")
            .append("svg text{font-family:system-ui,sans-serif}</style></head><body>");
        r.h.append("<h1>Pixel-space post-training on emoji: demo report</h1>");
        r.h.append("<p>Plan <b>").append(plan.name()).append("</b>; total wall time <b>").append(clock(totalSeconds)).append("</b>. ")
            .append("In each latent space (regime) a ").append(plan.baseSize()).append(" DiT base model is trained here on the emoji train split; ")
            .append("every post-trained model starts from it with the same data and budget, and the pixel term decodes with that regime's own ")
            .append("decoder. Lower is better for the judge distance, SWD and denoising error; sharpness ratios are to the real images ")
            .append("(1 is best, more is not better).</p><ul>");
        for (RegimeResult g : regimes)
            r.h.append("<li><a href=\"#regime-").append(g.regime().id).append("\"><b>").append(g.regime().id).append("</b></a>: ")
                .append(esc(g.regime().description)).append("</li>");
        r.h.append("</ul>");
        r.stages(stageSeconds);
        r.sideBySide(regimes);
        for (RegimeResult g : regimes) {
            Path dir = out.resolve(g.regime().id);
            String pre = g.regime().id + "/";
            r.h.append("<hr><h1 id=\"regime-").append(g.regime().id).append("\">Regime ").append(g.regime().id).append(": ")
                .append(esc(g.regime().description)).append("</h1>");
            r.sweep(g.sweep(), pre);
            r.metricsTable("All models", g.metrics(), g);
            r.headline(g.metrics(), g.headline(), g.sft(), g.pref());
            r.paired(g.metrics(), g.headline(), g.sft(), g.pref());
            r.mechanism(g.metrics(), g.sft());
            r.studies(dir, g.studies());
            r.samples(dir, pre, g.metrics().keySet());
            r.curves(dir, g.sft(), g.pref());
        }
        r.h.append("<h2>Settings</h2><pre>").append(esc(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(plan))).append("</pre>");
        Path manifest = out.resolve("data/manifest.json");
        if (Files.isRegularFile(manifest)) r.h.append("<h3>Data</h3><pre>").append(esc(Files.readString(manifest))).append("</pre>");
        r.h.append("</body></html>\n");
        Path f = out.resolve("report.html");
        AtomicFiles.writeString(f, r.h.toString());
        return f;
    }

    /** A head-to-head comparison of two groups under one judge, with its bootstrap intervals; null where a side has no results. */
    static PairedBootstrap.Comparison comparison(Map<String, JsonNode> metrics, List<Demo.Arm> arms, String a, String b, String key) {
        double[][] x = scores(metrics, arms, a, key), y = scores(metrics, arms, b, key);
        if (x.length == 0 || y.length == 0 || x[0].length != y[0].length) return null;
        return PairedBootstrap.compare(a, b, x, y, TIE_MARGIN, RESAMPLES, 20251129L);
    }

    /** +1: A closer (its interval below zero), -1: B closer, 0: no difference shown. */
    static int verdict(PairedBootstrap.Comparison c) {
        PairedBootstrap.Interval d = c.meanDifference();
        return !d.excludesZero() ? 0 : d.hi() < 0 ? 1 : -1;
    }

    static final String[] JUDGES = {"judge_distance", "judge2_distance"};

    /**
     * The regimes side by side: each autoencoder's reconstructions (the regime's ceiling), every
     * headline comparison under both judges, and a plain statement per regime of what the intervals
     * support, then whether the pixel term's effect changes with how lossy the latent space is.
     */
    private void sideBySide(List<RegimeResult> regimes) {
        h.append("<h2 id=side-by-side>The regimes side by side</h2>");
        h.append("<h3>Each latent space's ceiling: its autoencoder's reconstructions of the evaluation emoji</h3><table><tr><th>regime</th>")
            .append("<th>compression</th><th>PSNR held out (dB)</th><th>judge 1</th><th>judge 2</th><th>HF energy ratio</th><th>Laplacian var. ratio</th></tr>");
        for (RegimeResult g : regimes) {
            JsonNode rec = g.metrics().get("reconstruction");
            if (rec == null) continue;
            h.append("<tr><td>").append(g.regime().id).append("</td><td>").append(String.format("%.0fx", g.autoencoder().path("compression").asDouble())).append("</td>")
                .append(td(g.autoencoder().path("val_psnr"), 2))
                .append(td(rec.path("judge_mean"), 4)).append(td(rec.path("judge2_mean"), 3))
                .append(td(rec.path("hf_energy_ratio"), 2)).append(td(rec.path("laplacian_var_ratio"), 2)).append("</tr>");
        }
        h.append("</table><h3>Headline comparisons, with the pixel term (A) against without it (B), and the paper's own: SimPO + pixel against DPO</h3><p>Mean per-prompt distance A - B with ")
            .append("its 95% interval (negative: A closer to the real emoji). A verdict is stated only where the interval excludes zero.</p>")
            .append("<table><tr><th>A</th><th>B</th><th>judge</th>");
        for (RegimeResult g : regimes) h.append("<th>").append(g.regime().id).append("</th>");
        h.append("</tr>");
        List<Demo.Headline> hls = Demo.headlines(regimes.get(0).headline());
        Map<String, int[]> tally = new LinkedHashMap<>(); // regime -> {helped, hurt, none}
        for (RegimeResult g : regimes) tally.put(g.regime().id, new int[3]);
        Map<String, List<String>> says = new LinkedHashMap<>();
        for (RegimeResult g : regimes) says.put(g.regime().id, new ArrayList<>());
        for (Demo.Headline hl : hls)
            for (int j = 0; j < JUDGES.length; j++) {
                h.append("<tr><td>").append(label(hl.pixel())).append("</td><td>").append(label(hl.latent())).append("</td><td>").append(j + 1).append("</td>");
                for (RegimeResult g : regimes) {
                    PairedBootstrap.Comparison c = comparison(g.metrics(), g.arms(), hl.pixel(), hl.latent(), JUDGES[j]);
                    if (c == null) {
                        h.append("<td>-</td>");
                        continue;
                    }
                    int v = verdict(c);
                    if (hl.pixelTermOnly()) tally.get(g.regime().id)[v == 1 ? 0 : v == -1 ? 1 : 2]++;
                    PairedBootstrap.Interval d = c.meanDifference();
                    String cls = v == 1 ? "good" : v == -1 ? "bad" : "same";
                    String word = v == 1 ? label(hl.pixel()) + " closer" : v == -1 ? label(hl.latent()) + " closer" : "no difference shown";
                    h.append(String.format("<td><span class=%s>%s</span><br>%+.4f [%+.4f, %+.4f]</td>", cls, esc(word), d.estimate(), d.lo(), d.hi()));
                    says.get(g.regime().id).add(label(hl.pixel()) + " against " + label(hl.latent()) + ", judge " + (j + 1) + ": " + word);
                }
                h.append("</tr>");
            }
        h.append("</table><h3>What the evidence supports</h3>");
        for (RegimeResult g : regimes) {
            int[] t = tally.get(g.regime().id);
            h.append("<p><b>").append(g.regime().id).append("</b> (").append(esc(g.regime().description)).append("): of ").append(t[0] + t[1] + t[2])
                .append(" comparisons that differ only by the pixel term (both judges; SimPO + pixel against DPO changes the objective too and is not counted), the arm with the pixel term was closer to the real emoji in <b>").append(t[0])
                .append("</b>, farther in <b>").append(t[1]).append("</b>, and no difference was shown in <b>").append(t[2]).append("</b>. ")
                .append(t[0] + t[1] == 0 ? "No comparison shows a difference: the evidence supports no effect of the pixel term either way at this scale."
                    : t[1] == 0 ? "Where a difference was shown, it favoured the pixel term."
                    : t[0] == 0 ? "Where a difference was shown, it was against the pixel term."
                    : "The evidence is mixed: the pixel term helped in some comparisons and hurt in others.")
                .append("</p><ul>");
            for (String line : says.get(g.regime().id)) h.append("<li>").append(esc(line)).append("</li>");
            h.append("</ul>");
        }
        if (regimes.size() > 1) {
            int[] a = tally.get(regimes.get(0).regime().id), b = tally.get(regimes.get(1).regime().id);
            double na = a[0] - a[1], nb = b[0] - b[1];
            h.append("<p><b>Does the effect change with how lossy the latent space is?</b> Net (closer minus farther) for the pixel term: ")
                .append(String.format("%s %+.0f, %s %+.0f. ", regimes.get(0).regime().id, na, regimes.get(1).regime().id, nb))
                .append(na == nb ? "The same in both: these runs show no dependence on the latent space's loss."
                    : "It differs: the pixel term fares " + (na > nb ? "better" : "worse") + " in the " + regimes.get(0).regime().id
                        + " latent space than in the " + regimes.get(1).regime().id + " one. At this scale this is a count of interval verdicts, not a "
                        + "measured interaction; the per-comparison intervals above are the evidence.")
                .append("</p>");
        }
    }

    /** A group's name as the tables print it. */
    static String label(String group) {
        return switch (group) {
            case "sft-latent" -> "SFT latent only";
            case "dpo" -> "DPO";
            case "dpo-pixel" -> "DPO + pixel";
            case "simpo" -> "SimPO";
            case "simpo-pixel" -> "SimPO + pixel";
            default -> group.startsWith("sft-pixel-l") ? "SFT latent + pixel (lambda " + group.substring("sft-pixel-l".length()) + ")" : group;
        };
    }

    private void stages(Map<String, Double> s) {
        h.append("<h2>Stages</h2><table><tr><th>stage</th><th>wall time (this run; cached stages are quick)</th></tr>");
        s.forEach((k, v) -> h.append("<tr><td>").append(esc(k)).append("</td><td>").append(clock(v)).append("</td></tr>"));
        h.append("</table>");
    }

    /** The base model's guidance sweep on validation prompts: the metrics per guidance and the choice. */
    private void sweep(JsonNode sweep, String pre) {
        h.append("<h2 id=guidance>Guidance for the base model, chosen on validation prompts</h2><p>The base model (trained with ")
            .append("caption dropout, so its unconditional prediction is trained) sampled on ").append(sweep.get("prompts").asInt())
            .append(" validation prompts that are not evaluation prompts. Chosen: <b>").append(sweep.get("chosen").asDouble())
            .append("</b>, by ").append(esc(sweep.get("criterion").asText())).append("; every later stage samples with it. ")
            .append("Sharpness ratios near 1 mean the samples are as detailed as the real images.</p>")
            .append("<table><tr><th>guidance</th><th>judge distance</th><th>HF energy ratio</th><th>Laplacian var. ratio</th><th>samples</th></tr>");
        for (JsonNode r : sweep.get("rows")) {
            double g = r.get("guidance").asDouble();
            h.append("<tr><td>").append(g).append(g == sweep.get("chosen").asDouble() ? " (chosen)" : "").append("</td><td>")
                .append(String.format("%.4f", r.get("judge_mean").asDouble())).append("</td><td>")
                .append(String.format("%.3f", r.get("hf_energy_ratio").asDouble())).append("</td><td>")
                .append(String.format("%.3f", r.get("laplacian_var_ratio").asDouble())).append("</td><td><img class=pix src=\"").append(pre).append("guidance/g")
                .append(Demo.fmt(g)).append("/grid.png\" height=96></td></tr>");
        }
        h.append("</table>");
        for (JsonNode r : sweep.get("rows"))
            if (r.get("guidance").asDouble() == sweep.get("chosen").asDouble()) h.append(baseCheck(r.get("hf_energy_ratio").asDouble(), r.get("laplacian_var_ratio").asDouble()));
    }

    /** Bounds within which the base's sharpness ratios count as near the real images'. */
    static final double NEAR_LO = 0.8, NEAR_HI = 1.25;

    /** Whether the base model's samples look like the real images in sharpness, said before any arm is compared. */
    static String baseCheck(double hf, double lap) {
        boolean near = hf >= NEAR_LO && hf <= NEAR_HI && lap >= NEAR_LO && lap <= NEAR_HI;
        return String.format("<p id=base-check><b>Base check:</b> at the chosen guidance the base model's samples have %.2fx the real images' "
            + "high-frequency energy and %.2fx their Laplacian variance. %s</p>", hf, lap, near
            ? "Both are within [" + NEAR_LO + ", " + NEAR_HI + "] of the real images, so the base is a sound start and the arms below compare "
                + "post-training, not a distorted base."
            : "<span style=\"color:#a00\">At least one is outside [" + NEAR_LO + ", " + NEAR_HI + "]: the base's samples are not like the real "
                + "images in sharpness, and differences between the arms below may reflect that rather than the objectives.</span>");
    }

    static final List<String> T = List.of("100", "300", "500", "700", "900");

    private void metricsTable(String title, Map<String, JsonNode> metrics, RegimeResult g) {
        h.append("<h2>").append(title).append("</h2><table><tr><th>model</th><th>judge distance</th><th>judge 2 distance</th><th>HF energy ratio</th><th>Laplacian var. ratio</th>")
            .append("<th>SWD 64</th><th>SWD 32</th><th>SWD 16</th>");
        for (String t : T) h.append("<th>denoise err. t=").append(t).append("</th>");
        h.append("</tr>");
        metrics.forEach((k, j) -> {
            h.append("<tr><td>").append(esc(k)).append("</td>").append(td(j.path("judge_mean"), 4)).append(td(j.path("judge2_mean"), 4))
                .append(td(j.path("hf_energy_ratio"), 3))
                .append(td(j.path("laplacian_var_ratio"), 3));
            for (int l = 0; l < 3; l++) h.append(td(j.path("swd").path(l), 2));
            for (String t : T) h.append(td(j.path("denoise_error").path(t), 4));
            h.append("</tr>");
        });
        h.append("</table><p>Rows <i>real</i> and <i>reconstruction</i> are references: the real evaluation emoji and their round trip through ")
            .append(esc(g.regime().description)).append(" (the ceiling of this latent space). SWD is the sliced Wasserstein distance (x1e3) between 7x7 patches of Laplacian-pyramid levels ")
            .append("of the samples and of the real images.</p>");
    }

    /** Mean and spread (max - min) over seeds per group; a difference is claimed only beyond both spreads. */
    private void headline(Map<String, JsonNode> metrics, String headline, List<Demo.Arm> sft, List<Demo.Arm> pref) {
        h.append("<h2>Headline: latent vs latent + pixel, over training seeds</h2><p>Mean over training seeds and, in brackets, ")
            .append("the spread (max - min) between seeds. A difference is claimed only where it exceeds both arms' spreads; with one seed none is claimed.</p>");
        compare(metrics, sft, "sft-latent", headline);
        compare(metrics, pref, "dpo", "dpo-pixel");
    }

    static long seeds(List<Demo.Arm> arms, String group) {
        return arms.stream().filter(a -> a.group().equals(group)).count();
    }

    private void compare(Map<String, JsonNode> metrics, List<Demo.Arm> arms, String a, String b) {
        if (b == null) return;
        Map<String, java.util.function.Function<JsonNode, Double>> ms = new LinkedHashMap<>();
        ms.put("judge distance", j -> j.path("judge_mean").asDouble());
        ms.put("|1 - HF energy ratio|", j -> Math.abs(1 - j.path("hf_energy_ratio").asDouble()));
        ms.put("|1 - Laplacian var. ratio|", j -> Math.abs(1 - j.path("laplacian_var_ratio").asDouble()));
        ms.put("SWD 64 (finest)", j -> j.path("swd").path(0).asDouble());
        ms.put("denoise err. t=100", j -> j.path("denoise_error").path("100").asDouble());
        h.append("<h3>").append(esc(b)).append(" vs ").append(esc(a)).append("</h3><table><tr><th>metric (lower is better)</th><th>")
            .append(esc(a)).append(" mean [spread]</th><th>").append(esc(b)).append(" mean [spread]</th><th>verdict</th></tr>");
        ms.forEach((name, f) -> {
            double[] x = values(metrics, arms, a, f), y = values(metrics, arms, b, f);
            double mx = mean(x), my = mean(y), sx = spread(x), sy = spread(y);
            boolean claim = x.length > 1 && y.length > 1 && Math.abs(mx - my) > Math.max(sx, sy);
            String verdict = !claim ? "<span class=same>within seed spread</span>" : (my < mx ? "<span class=good>" + esc(b) + " better</span>" : esc(a) + " better");
            h.append("<tr><td>").append(name).append("</td><td>").append(String.format("%.4f [%.4f]", mx, sx)).append("</td><td>")
                .append(String.format("%.4f [%.4f]", my, sy)).append("</td><td>").append(verdict).append("</td></tr>");
        });
        h.append("</table>");
    }

    static double[] values(Map<String, JsonNode> metrics, List<Demo.Arm> arms, String group, java.util.function.Function<JsonNode, Double> f) {
        return arms.stream().filter(x -> x.group().equals(group) && metrics.containsKey(x.name())).mapToDouble(x -> f.apply(metrics.get(x.name()))).toArray();
    }

    static double mean(double[] v) {
        return java.util.Arrays.stream(v).average().orElse(Double.NaN);
    }

    static double spread(double[] v) {
        return v.length == 0 ? Double.NaN : java.util.Arrays.stream(v).max().getAsDouble() - java.util.Arrays.stream(v).min().getAsDouble();
    }

    private void paired(Map<String, JsonNode> metrics, String h2, List<Demo.Arm> sft, List<Demo.Arm> pref) {
        h.append("<h2>Head to head per prompt (paper layout), with 95% intervals</h2>");
        paired(metrics, h2, sft, pref, "judge_distance", "Judge 1: pixels and image gradients against the real emoji. This judge also "
            + "picked the preference pairs (winner: the sample closest to the real emoji), so the preference arms were trained towards it.");
        paired(metrics, h2, sft, pref, "judge2_distance", "Judge 2: colour (per-channel mean and spread) and structure (energy of the two finest "
            + "Laplacian-pyramid bands) statistics against the real emoji's, position-free. It played no part in picking the pairs.");
    }

    private void paired(Map<String, JsonNode> metrics, String h2, List<Demo.Arm> sft, List<Demo.Arm> pref, String key, String judge) {
        h.append("<h3>").append(esc(judge.substring(0, judge.indexOf(':')))).append("</h3><p>").append(esc(judge))
            .append(" Per evaluation prompt, the distance is averaged over sample seeds and, for a group, over its training seeds. ")
            .append("A wins when its distance is lower by more than ").append((int) (TIE_MARGIN * 100)).append("% of the larger of the two; ")
            .append("otherwise a tie. The intervals come from a paired bootstrap over prompts that also resamples each group's training seeds (")
            .append(RESAMPLES).append(" resamples): a difference is stated only where its interval excludes zero.</p>");
        List<String[]> rows = new ArrayList<>();
        for (Demo.Headline hl : Demo.headlines(h2)) rows.add(new String[] {hl.pixel(), hl.latent()});
        java.util.Set<String> groups = new java.util.LinkedHashSet<>();
        for (Demo.Arm a : sft) groups.add(a.group());
        for (Demo.Arm a : pref) groups.add(a.group());
        for (String g : groups) rows.add(new String[] {g, "base"});
        List<Demo.Arm> all = new ArrayList<>(sft);
        all.addAll(pref);
        h.append("<table><tr><th>A</th><th>B</th><th>seeds</th><th>A wins</th><th>tie</th><th>B wins</th><th>prompts</th>")
            .append("<th>mean distance A - B [95%]</th><th>wins - losses of A [95%]</th><th>verdict</th></tr>");
        for (String[] r : rows) {
            PairedBootstrap.Comparison c = comparison(metrics, all, r[0], r[1], key);
            if (c == null) continue;
            PairedTable t = c.table();
            PairedBootstrap.Interval d = c.meanDifference(), w = c.winMinusLoss();
            int v = verdict(c);
            String verdict = v == 0 ? "<span class=same>no difference shown</span>"
                : v == 1 ? "<span class=good>" + esc(r[0]) + " closer</span>" : esc(r[1]) + " closer";
            h.append(String.format("<tr><td>%s</td><td>%s</td><td>%d / %d</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td>%d</td>"
                    + "<td>%+.4f [%+.4f, %+.4f]</td><td>%+.2f [%+.2f, %+.2f]</td><td>%s</td></tr>",
                esc(r[0]), esc(r[1]), groupMetrics(metrics, all, r[0]).size(), groupMetrics(metrics, all, r[1]).size(), t.pct(t.aWins()), t.pct(t.ties()), t.pct(t.bWins()), t.total(),
                d.estimate(), d.lo(), d.hi(), w.estimate(), w.lo(), w.hi(), verdict));
        }
        h.append("</table>");
    }

    static final int RESAMPLES = 2000;

    /** The metrics of a group's arms (one per training seed), or of the model named {@code group}. */
    static List<JsonNode> groupMetrics(Map<String, JsonNode> metrics, List<Demo.Arm> arms, String group) {
        List<JsonNode> ms = new ArrayList<>();
        for (Demo.Arm a : arms) if (a.group().equals(group) && metrics.containsKey(a.name())) ms.add(metrics.get(a.name()));
        if (ms.isEmpty() && metrics.containsKey(group)) ms.add(metrics.get(group));
        return ms;
    }

    /** Per-prompt distances under {@code key} {@code [trainingSeed][prompt]} of a group (see {@link #groupMetrics}). */
    static double[][] scores(Map<String, JsonNode> metrics, List<Demo.Arm> arms, String group, String key) {
        return groupMetrics(metrics, arms, group).stream().map(m -> arr(m.path(key))).toArray(double[][]::new);
    }

    static double[] arr(JsonNode a) {
        double[] v = new double[a.size()];
        for (int i = 0; i < v.length; i++) v[i] = a.get(i).asDouble();
        return v;
    }

    private void samples(Path out, String pre, java.util.Set<String> names) {
        h.append("<h2>Samples: the same prompts and seeds for every model</h2><p>Each grid: evaluation prompts in order, seed 0 first. ")
            .append("Beside it, the centre of the first four samples at 4x.</p>");
        for (String n : names) {
            Path dir = out.resolve("eval").resolve(n);
            if (!Files.isRegularFile(dir.resolve("grid.png"))) continue;
            h.append("<h3>").append(esc(n)).append("</h3><img class=pix src=\"").append(pre).append("eval/").append(esc(n)).append("/grid.png\" width=600> ");
            for (int i = 0; i < 4; i++) {
                String f = String.format("%03d-0.png", i);
                if (Files.isRegularFile(dir.resolve(f))) h.append("<span class=zoom><img src=\"").append(pre).append("eval/").append(esc(n)).append('/').append(f).append("\"></span>");
            }
        }
    }

    private void curves(Path out, List<Demo.Arm> sft, List<Demo.Arm> pref) throws IOException {
        h.append("<h2>Loss curves</h2>");
        figure("base (latent loss)", List.of(out.resolve("base/metrics.jsonl")), List.of("base"), "loss");
        List<Path> fs = new ArrayList<>();
        List<String> ls = new ArrayList<>();
        for (Demo.Arm a : sft) {
            fs.add(out.resolve("runs").resolve(a.name()).resolve("metrics.jsonl"));
            ls.add(a.name());
        }
        figure("SFT: latent term", fs, ls, "latent");
        fs.clear();
        ls.clear();
        for (Demo.Arm a : pref) {
            fs.add(out.resolve("runs").resolve(a.name()).resolve("metrics.jsonl"));
            ls.add(a.name());
        }
        figure("preference: implicit accuracy (latent)", fs, ls, "accuracy");
    }

    /**
     * The human studies the demo created: how to serve them, and the results of every study that has
     * votes (read from {@code studies/eval.db} each time the report is written, so
     * {@code pixelpost demo --report} folds in new votes).
     */
    private void studies(Path out, JsonNode studies) {
        h.append("<h2 id=studies>Human evaluation</h2>");
        if (studies == null || studies.path("studies").isEmpty()) {
            h.append("<p>No studies were created.</p>");
            return;
        }
        h.append("<p>The automatic judges above are no substitute for people. The demo created these studies (the paper's A/B questions: ")
            .append("fewer flaws, more appeal; and yes/no alignment questions per prompt). Serve them with <code>").append(esc(studies.path("serve").asText()))
            .append("</code>, invite annotators, and once they have voted run <code>").append(esc(studies.path("results").asText()))
            .append("</code> to fold the results in here (gold and repeated items measure the annotators and are left out of the results).</p>")
            .append("<table><tr><th>study</th><th>kind</th><th>items</th><th>votes</th></tr>");
        Path db = out.resolve("studies/eval.db");
        Map<String, JsonNode> results = new LinkedHashMap<>();
        Map<String, Integer> stored = new LinkedHashMap<>();
        if (Files.isRegularFile(db))
            try (org.pixelpost.eval.study.StudyStore store = new org.pixelpost.eval.study.StudyStore("jdbc:sqlite:" + db)) {
                for (JsonNode st : studies.get("studies")) {
                    String name = st.get("name").asText();
                    results.put(name, org.pixelpost.eval.study.StudyResults.compute(store, name));
                    stored.put(name, store.votes(name).size());
                }
            } catch (Exception e) {
                h.append("<p>The study results could not be read from ").append(esc(db.toString())).append(": ").append(esc(String.valueOf(e.getMessage()))).append("</p>");
            }
        for (JsonNode st : studies.get("studies")) {
            JsonNode r = results.get(st.get("name").asText());
            h.append("<tr><td>").append(esc(st.get("name").asText())).append("</td><td>").append(esc(st.get("kind").asText())).append("</td><td>")
                .append(st.get("items").asInt()).append("</td><td>").append(r == null ? "-" : String.valueOf(stored.get(st.get("name").asText()))).append("</td></tr>");
        }
        h.append("</table>");
        results.forEach((name, r) -> {
            if (stored.get(name) == 0) return;
            h.append("<h3>").append(esc(name)).append("</h3><p>").append(stored.get(name)).append(" votes, ").append(r.path("votes").asInt())
                .append(" of them on the models' own items.</p>");
            for (JsonNode pair : r.path("pairs")) {
                h.append("<table><tr><th>question</th><th>").append(esc(pair.get("model_a").asText())).append(" wins [95%]</th><th>tie</th><th>")
                    .append(esc(pair.get("model_b").asText())).append(" wins [95%]</th><th>items</th></tr>");
                pair.fields().forEachRemaining(f -> {
                    if (!f.getValue().isObject()) return;
                    JsonNode q = f.getValue();
                    h.append("<tr><td>").append(esc(f.getKey())).append("</td>").append(share(q.path("a_wins"))).append(share(q.path("tie")))
                        .append(share(q.path("b_wins"))).append("<td>").append(q.path("n").asInt()).append("</td></tr>");
                });
                h.append("</table>");
            }
            if (r.has("alignment")) {
                h.append("<table><tr><th>model</th><th>yes [95%]</th><th>questions</th></tr>");
                r.get("alignment").fields().forEachRemaining(f -> h.append("<tr><td>").append(esc(f.getKey())).append("</td>")
                    .append(String.format("<td>%.0f%% [%.0f, %.0f]</td>", 100 * f.getValue().path("rate").asDouble(),
                        100 * f.getValue().path("ci95_low").asDouble(), 100 * f.getValue().path("ci95_high").asDouble()))
                    .append("<td>").append(f.getValue().path("questions").asInt()).append("</td></tr>"));
                h.append("</table>");
            }
        });
    }

    private static String share(JsonNode s) {
        return String.format("<td>%.0f%% [%.0f, %.0f]</td>", 100 * s.path("share").asDouble(), 100 * s.path("ci95_low").asDouble(), 100 * s.path("ci95_high").asDouble());
    }

    static final String[] COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

    /** An inline SVG line plot of one metric over steps, one line per file. */
    private void figure(String title, List<Path> files, List<String> labels, String key) throws IOException {
        List<double[][]> series = new ArrayList<>();
        ObjectMapper om = new ObjectMapper();
        for (Path f : files) {
            List<double[]> pts = new ArrayList<>();
            if (Files.isRegularFile(f))
                for (String l : Files.readAllLines(f)) {
                    JsonNode j = om.readTree(l);
                    if (j.has(key)) pts.add(new double[] {j.get("step").asDouble(), j.get(key).asDouble()});
                }
            series.add(pts.toArray(new double[0][]));
        }
        plot(title, "step", labels, series);
    }

    /** An inline SVG line plot: one line per series of (x, y) points. */
    private void plot(String title, String xName, List<String> labels, List<double[][]> series) {
        double minX = Double.MAX_VALUE, maxX = -Double.MAX_VALUE, minY = Double.MAX_VALUE, maxY = -Double.MAX_VALUE;
        for (double[][] pts : series)
            for (double[] p : pts) {
                minX = Math.min(minX, p[0]);
                maxX = Math.max(maxX, p[0]);
                minY = Math.min(minY, p[1]);
                maxY = Math.max(maxY, p[1]);
            }
        if (minX == Double.MAX_VALUE) return;
        int w = 640, hh = 320, pad = 56;
        double sx = (w - 2 * pad) / Math.max(1e-9, maxX - minX), sy = (hh - 2 * pad) / Math.max(1e-9, maxY - minY);
        h.append("<figure><svg width=").append(w).append(" height=").append(hh).append(" style=\"border:1px solid #ddd\">");
        h.append(String.format("<text x=%d y=20 font-size=15>%s</text>", pad, esc(title)));
        h.append(String.format("<text x=4 y=%d font-size=13>%.3g</text><text x=4 y=%d font-size=13>%.3g</text>", pad, maxY, hh - pad, minY));
        h.append(String.format("<text x=%d y=%d font-size=13>%s %.0f</text><text x=%d y=%d font-size=13>%.0f</text>", pad, hh - 8, esc(xName), minX,
            w - pad - 30, hh - 8, maxX));
        for (int i = 0; i < series.size(); i++) {
            StringBuilder pts = new StringBuilder();
            for (double[] p : series.get(i)) pts.append(String.format("%.1f,%.1f ", pad + (p[0] - minX) * sx, hh - pad - (p[1] - minY) * sy));
            h.append("<polyline fill=none stroke-width=2 stroke=\"").append(COLORS[i % COLORS.length]).append("\" points=\"").append(pts).append("\"/>");
        }
        h.append("</svg><figcaption>");
        for (int i = 0; i < labels.size(); i++)
            h.append("<span style=\"color:").append(COLORS[i % COLORS.length]).append("\">&#9632; ").append(esc(labels.get(i))).append("</span> ");
        h.append("</figcaption></figure>");
    }

    /**
     * The mechanism the paper names: the pixel-space error of each SFT group's one-step prediction of
     * the clean image, by timestep, in whole and above half of Nyquist (the detail a latent loss
     * does not see), averaged over the group's training seeds.
     */
    private void mechanism(Map<String, JsonNode> metrics, List<Demo.Arm> sft) {
        h.append("<h2 id=mechanism>Mechanism: pixel-space denoising error by timestep</h2><p>Each model predicts the clean latent of held-out ")
            .append("validation images noised to timestep t, in one step; the decoded prediction is compared with the real image. Left: the whole ")
            .append("mean squared error; right: its part above half of Nyquist (high frequencies). Lower is better.</p>");
        java.util.Set<String> groups = new java.util.LinkedHashSet<>();
        groups.add("base");
        for (Demo.Arm a : sft) if (a.group().equals("sft-latent") || a.group().startsWith("sft-pixel-l")) groups.add(a.group());
        for (String key : new String[] {"denoise_error", "denoise_error_hf"}) {
            List<String> labels = new ArrayList<>();
            List<double[][]> series = new ArrayList<>();
            for (String g : groups) {
                List<JsonNode> ms = groupMetrics(metrics, sft, g);
                if (ms.isEmpty() || ms.get(0).path(key).isMissingNode()) continue;
                double[][] pts = new double[T.size()][];
                for (int i = 0; i < T.size(); i++) {
                    double v = 0;
                    for (JsonNode m : ms) v += m.path(key).path(T.get(i)).asDouble() / ms.size();
                    pts[i] = new double[] {Double.parseDouble(T.get(i)), v};
                }
                labels.add(g);
                series.add(pts);
            }
            plot(key.endsWith("_hf") ? "high-frequency part (above Nyquist / 2)" : "whole error", "t", labels, series);
        }
    }

    private static String td(JsonNode v, int digits) {
        return v.isMissingNode() || v.isNull() ? "<td>-</td>" : String.format("<td>%." + digits + "f</td>", v.asDouble());
    }

    static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }

    static String clock(double s) {
        long t = Math.round(s);
        return String.format("%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    }
}
