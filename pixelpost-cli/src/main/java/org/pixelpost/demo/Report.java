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
import org.pixelpost.eval.PairedTable;
import org.pixelpost.io.AtomicFiles;

/** {@code report.html}: settings, metric tables with seed spreads, paired tables, samples with zoomed crops, loss curves. */
final class Report {
    static final double TIE_MARGIN = 0.05;
    private final StringBuilder h = new StringBuilder();

    private Report() {}

    static Path write(Path out, Plan plan, String headline, List<Demo.Arm> sft, List<Demo.Arm> pref, Map<String, JsonNode> metrics,
                      JsonNode sweep, Map<String, Double> stageSeconds, double totalSeconds) throws IOException {
        Report r = new Report();
        r.h.append("<!doctype html><html><head><meta charset=utf-8><title>PixelPost demo report</title><style>")
            .append("body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;margin:8px 0 16px}")
            .append("td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}")
            .append(".pix{image-rendering:pixelated}.zoom{width:128px;height:128px;overflow:hidden;display:inline-block;border:1px solid #999;margin:2px}")
            .append(".zoom img{width:256px;height:256px;margin:-64px 0 0 -64px;image-rendering:pixelated}.good{color:#070}.same{color:#777}")
            .append("figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}figcaption{font-size:12px}</style></head><body>");
        r.h.append("<h1>Pixel-space post-training on emoji: demo report</h1>");
        r.h.append("<p>Plan <b>").append(plan.name()).append("</b>; total wall time <b>").append(clock(totalSeconds)).append("</b>. ")
            .append("Base model: a ").append(plan.baseSize()).append(" DiT trained here on TAEF2 latents of the emoji train split; ")
            .append("every post-trained model starts from it with the same data and budget. Lower is better for the judge distance, SWD and ")
            .append("denoising error; sharpness ratios are to the real images (1 is best, more is not better).</p>");
        r.stages(stageSeconds);
        r.sweep(sweep);
        r.metricsTable("All models", metrics);
        r.headline(metrics, headline, sft, pref);
        r.paired(metrics, headline, sft, pref);
        r.samples(out, metrics.keySet());
        r.curves(out, sft, pref);
        r.h.append("<h2>Settings</h2><pre>").append(esc(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(plan))).append("</pre>");
        Path manifest = out.resolve("data/manifest.json");
        if (Files.isRegularFile(manifest)) r.h.append("<h3>Data</h3><pre>").append(esc(Files.readString(manifest))).append("</pre>");
        r.h.append("</body></html>\n");
        Path f = out.resolve("report.html");
        AtomicFiles.writeString(f, r.h.toString());
        return f;
    }

    private void stages(Map<String, Double> s) {
        h.append("<h2>Stages</h2><table><tr><th>stage</th><th>wall time (this run; cached stages are quick)</th></tr>");
        s.forEach((k, v) -> h.append("<tr><td>").append(esc(k)).append("</td><td>").append(clock(v)).append("</td></tr>"));
        h.append("</table>");
    }

    /** The base model's guidance sweep on validation prompts: the metrics per guidance and the choice. */
    private void sweep(JsonNode sweep) {
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
                .append(String.format("%.3f", r.get("laplacian_var_ratio").asDouble())).append("</td><td><img class=pix src=\"guidance/g")
                .append(Demo.fmt(g)).append("/grid.png\" height=64></td></tr>");
        }
        h.append("</table>");
    }

    static final List<String> T = List.of("100", "300", "500", "700", "900");

    private void metricsTable(String title, Map<String, JsonNode> metrics) {
        h.append("<h2>").append(title).append("</h2><table><tr><th>model</th><th>judge distance</th><th>HF energy ratio</th><th>Laplacian var. ratio</th>")
            .append("<th>SWD 64</th><th>SWD 32</th><th>SWD 16</th>");
        for (String t : T) h.append("<th>denoise err. t=").append(t).append("</th>");
        h.append("</tr>");
        metrics.forEach((k, j) -> {
            h.append("<tr><td>").append(esc(k)).append("</td>").append(td(j.path("judge_mean"), 4)).append(td(j.path("hf_energy_ratio"), 3))
                .append(td(j.path("laplacian_var_ratio"), 3));
            for (int l = 0; l < 3; l++) h.append(td(j.path("swd").path(l), 2));
            for (String t : T) h.append(td(j.path("denoise_error").path(t), 4));
            h.append("</tr>");
        });
        h.append("</table><p>Rows <i>real</i> and <i>taef2-reconstruction</i> are references: the real evaluation emoji and their TAEF2 round trip ")
            .append("(the ceiling of this latent space). SWD is the sliced Wasserstein distance (x1e3) between 7x7 patches of Laplacian-pyramid levels ")
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
        h.append("<h2>Head to head per prompt (paper layout)</h2><p>Per evaluation prompt, the automatic judge's distance to the real emoji ")
            .append("(pixels plus image gradients, averaged over sample seeds). A wins when its distance is lower by more than ")
            .append((int) (TIE_MARGIN * 100)).append("% of the larger of the two; otherwise a tie.</p>");
        List<String[]> rows = new ArrayList<>();
        for (Demo.Arm a : sft)
            if (a.seed() == 0) rows.add(new String[] {a.name(), "base"});
        for (Demo.Arm a : sft)
            if (a.group().equals(h2)) rows.add(new String[] {a.name(), a.name().replace(h2, "sft-latent")});
        rows.add(new String[] {"sft-latent-s0", "sft-latent-s1"}); // the seed-noise control
        for (Demo.Arm a : pref)
            if (a.seed() == 0) rows.add(new String[] {a.name(), "base"});
        for (Demo.Arm a : pref)
            if (a.group().equals("dpo-pixel")) rows.add(new String[] {a.name(), a.name().replace("dpo-pixel", "dpo")});
        rows.add(new String[] {"dpo-s0", "dpo-s1"});
        rows.add(new String[] {"simpo-pixel-s0", "dpo-s0"});
        h.append("<table><tr><th>model A</th><th>model B</th><th>A wins</th><th>tie</th><th>B wins</th><th>prompts</th></tr>");
        for (String[] r : rows) {
            JsonNode ja = metrics.get(r[0]), jb = metrics.get(r[1]);
            if (ja == null || jb == null) continue;
            PairedTable t = PairedTable.of(r[0], r[1], arr(ja.path("judge_distance")), arr(jb.path("judge_distance")), TIE_MARGIN);
            h.append(String.format("<tr><td>%s</td><td>%s</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td>%d</td></tr>",
                esc(r[0]), esc(r[1]), t.pct(t.aWins()), t.pct(t.ties()), t.pct(t.bWins()), t.total()));
        }
        h.append("</table>");
    }

    static double[] arr(JsonNode a) {
        double[] v = new double[a.size()];
        for (int i = 0; i < v.length; i++) v[i] = a.get(i).asDouble();
        return v;
    }

    private void samples(Path out, java.util.Set<String> names) {
        h.append("<h2>Samples: the same prompts and seeds for every model</h2><p>Each grid: evaluation prompts in order, seed 0 first. ")
            .append("Beside it, the centre of the first four samples at 4x.</p>");
        for (String n : names) {
            Path dir = out.resolve("eval").resolve(n);
            if (!Files.isRegularFile(dir.resolve("grid.png"))) continue;
            h.append("<h3>").append(esc(n)).append("</h3><img class=pix src=\"eval/").append(esc(n)).append("/grid.png\" width=600> ");
            for (int i = 0; i < 4; i++) {
                String f = String.format("%03d-0.png", i);
                if (Files.isRegularFile(dir.resolve(f))) h.append("<span class=zoom><img src=\"eval/").append(esc(n)).append('/').append(f).append("\"></span>");
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

    static final String[] COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

    /** An inline SVG line plot of one metric over steps, one line per file. */
    private void figure(String title, List<Path> files, List<String> labels, String key) throws IOException {
        List<double[][]> series = new ArrayList<>();
        ObjectMapper om = new ObjectMapper();
        double minX = Double.MAX_VALUE, maxX = -Double.MAX_VALUE, minY = Double.MAX_VALUE, maxY = -Double.MAX_VALUE;
        for (Path f : files) {
            List<double[]> pts = new ArrayList<>();
            if (Files.isRegularFile(f))
                for (String l : Files.readAllLines(f)) {
                    JsonNode j = om.readTree(l);
                    if (!j.has(key)) continue;
                    double x = j.get("step").asDouble(), y = j.get(key).asDouble();
                    pts.add(new double[] {x, y});
                    minX = Math.min(minX, x);
                    maxX = Math.max(maxX, x);
                    minY = Math.min(minY, y);
                    maxY = Math.max(maxY, y);
                }
            series.add(pts.toArray(new double[0][]));
        }
        if (minX == Double.MAX_VALUE) return;
        int w = 520, hh = 260, pad = 40;
        double sx = (w - 2 * pad) / Math.max(1e-9, maxX - minX), sy = (hh - 2 * pad) / Math.max(1e-9, maxY - minY);
        h.append("<figure><svg width=").append(w).append(" height=").append(hh).append(" style=\"border:1px solid #ddd\">");
        h.append(String.format("<text x=%d y=16 font-size=13>%s</text>", pad, esc(title)));
        h.append(String.format("<text x=4 y=%d font-size=10>%.3g</text><text x=4 y=%d font-size=10>%.3g</text>", pad, maxY, hh - pad, minY));
        h.append(String.format("<text x=%d y=%d font-size=10>step %.0f</text><text x=%d y=%d font-size=10>%.0f</text>", pad, hh - 8, minX, w - pad - 20, hh - 8, maxX));
        for (int i = 0; i < series.size(); i++) {
            StringBuilder pts = new StringBuilder();
            for (double[] p : series.get(i)) pts.append(String.format("%.1f,%.1f ", pad + (p[0] - minX) * sx, hh - pad - (p[1] - minY) * sy));
            h.append("<polyline fill=none stroke-width=1.5 stroke=\"").append(COLORS[i % COLORS.length]).append("\" points=\"").append(pts).append("\"/>");
        }
        h.append("</svg><figcaption>");
        for (int i = 0; i < labels.size(); i++)
            h.append("<span style=\"color:").append(COLORS[i % COLORS.length]).append("\">&#9632; ").append(esc(labels.get(i))).append("</span> ");
        h.append("</figcaption></figure>");
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
