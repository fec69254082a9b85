package org.pixelpost.eval.study;

import org.pixelpost.pipeline.SampleFolder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.pixelpost.io.check.BadFileException;

/**
 * Builds studies from folders written by {@code pixelpost sample} (their {@code settings.json}
 * says which file holds which prompt and seed). Images are registered under random ids, so the
 * browser never learns a model's name or folder.
 */
public final class Studies {
    private Studies() {}

    /** One sampled image: prompt, seed and file. */
    record Sample(String prompt, long seed, Path file) {}

    static List<Sample> samples(Path dir) throws IOException {
        List<Sample> out = new ArrayList<>();
        for (SampleFolder.Image i : SampleFolder.read(dir).images())
            out.add(new Sample(i.prompt(), i.seed(), dir.resolve(i.file()).toAbsolutePath()));
        return out;
    }

    /**
     * Creates a study. {@code models} maps a model name to its sample folder. A/B: every pair of
     * models, every (prompt, seed) both have, once for flaws and once for appeal, left and right
     * in a random order. Alignment: every image with its prompt and the prompt's questions.
     * Pairs: per prompt, the images of the (single) model, for best and worst.
     */
    public static int create(StudyStore store, String name, StudyStore.Kind kind, Map<String, Path> models, Path questionsFile,
                             List<String> prompts, int annotators, long seed) throws IOException, SQLException {
        return create(store, name, kind, models, questionsFile, prompts, annotators, seed, 0, 0, null);
    }

    /** The model name of gold items' images: an image against a degraded copy of itself. */
    public static final String GOLD_ORIGINAL = "gold:original", GOLD_DEGRADED = "gold:degraded";

    /**
     * As above; an A/B study also gets gold items at {@code goldRate} of its (prompt, seed) samples:
     * one of the images against a copy of itself, blurred and with noise (written to {@code goldDir}),
     * whose known answer (the original has fewer flaws and more appeal) measures each annotator's care.
     */
    public static int create(StudyStore store, String name, StudyStore.Kind kind, Map<String, Path> models, Path questionsFile,
                             List<String> prompts, int annotators, long seed, double goldRate, double repeatRate, Path goldDir)
        throws IOException, SQLException {
        if (!(repeatRate >= 0 && repeatRate <= 1)) throw new IllegalArgumentException("--repeat-rate must be in [0, 1], not " + repeatRate);
        if (repeatRate > 0 && kind != StudyStore.Kind.AB) throw new IllegalArgumentException("--repeat-rate is for A/B studies");
        if (annotators < 1) throw new IllegalArgumentException("--annotators must be positive");
        if (!(goldRate >= 0 && goldRate <= 1)) throw new IllegalArgumentException("--gold-rate must be in [0, 1], not " + goldRate);
        if (goldRate > 0 && kind != StudyStore.Kind.AB) throw new IllegalArgumentException("--gold-rate is for A/B studies");
        if (goldRate > 0 && goldDir == null) throw new IllegalArgumentException("gold items need a folder for their degraded images");
        Random rnd = new Random(seed);
        Map<String, String> images = new LinkedHashMap<>();
        Map<String, Map<String, Sample>> byModel = new LinkedHashMap<>();
        for (Map.Entry<String, Path> m : models.entrySet()) {
            Map<String, Sample> s = new LinkedHashMap<>();
            for (Sample x : samples(m.getValue()))
                if (prompts == null || prompts.contains(x.prompt())) s.put(x.prompt() + "\u0000" + x.seed(), x);
            byModel.put(m.getKey(), s);
        }
        List<ObjectNode> items = new ArrayList<>();
        List<String> names = new ArrayList<>(models.keySet());
        switch (kind) {
            case AB -> {
                if (names.size() < 2) throw new IllegalArgumentException("an A/B study needs at least two models (--samples NAME=DIR twice)");
                for (int a = 0; a < names.size(); a++)
                    for (int b = a + 1; b < names.size(); b++)
                        for (Map.Entry<String, Sample> e : byModel.get(names.get(a)).entrySet()) {
                            Sample sb = byModel.get(names.get(b)).get(e.getKey());
                            if (sb == null) continue;
                            for (String q : List.of("flaws", "appeal")) {
                                boolean swap = rnd.nextBoolean();
                                ObjectNode it = StudyStore.JSON.createObjectNode();
                                it.put("question", q).put("prompt", e.getValue().prompt()).put("seed", e.getValue().seed());
                                it.set("left", image(swap ? names.get(b) : names.get(a), swap ? sb : e.getValue(), images));
                                it.set("right", image(swap ? names.get(a) : names.get(b), swap ? e.getValue() : sb, images));
                                items.add(it);
                            }
                        }
            }
            case ALIGNMENT -> {
                Map<String, List<String>> questions = questions(questionsFile);
                for (String m : names)
                    for (Sample s : byModel.get(m).values()) {
                        List<String> qs = questions.get(s.prompt());
                        if (qs == null || qs.isEmpty()) throw new BadFileException(questionsFile, "no questions for prompt \"" + s.prompt() + "\"");
                        ObjectNode it = StudyStore.JSON.createObjectNode();
                        it.put("prompt", s.prompt()).put("seed", s.seed());
                        it.set("image", image(m, s, images));
                        ArrayNode q = it.putArray("questions");
                        qs.forEach(q::add);
                        items.add(it);
                    }
            }
            case PAIRS -> {
                if (names.size() != 1) throw new IllegalArgumentException("a pairs study takes the samples of one model (several images per prompt)");
                Map<String, List<Sample>> perPrompt = new LinkedHashMap<>();
                for (Sample s : byModel.get(names.get(0)).values()) perPrompt.computeIfAbsent(s.prompt(), k -> new ArrayList<>()).add(s);
                for (Map.Entry<String, List<Sample>> e : perPrompt.entrySet()) {
                    if (e.getValue().size() < 2) continue;
                    ObjectNode it = StudyStore.JSON.createObjectNode();
                    it.put("prompt", e.getKey());
                    ArrayNode a = it.putArray("images");
                    List<Sample> shuffled = new ArrayList<>(e.getValue());
                    java.util.Collections.shuffle(shuffled, rnd);
                    for (Sample s : shuffled) a.add(image(names.get(0), s, images));
                    items.add(it);
                }
            }
        }
        if (items.isEmpty()) throw new IllegalArgumentException("the sample folders share no (prompt, seed): nothing to compare");
        if (repeatRate > 0) {
            // repeated items: a second copy of some real items, sides exchanged, to measure each annotator's self-consistency
            List<ObjectNode> originals = new ArrayList<>(items);
            java.util.Collections.shuffle(originals, rnd);
            for (ObjectNode o : originals.subList(0, (int) Math.max(1, Math.round(repeatRate * originals.size())))) {
                ObjectNode r = o.deepCopy();
                r.set("left", o.get("right"));
                r.set("right", o.get("left"));
                r.put("repeat_of", comparisonKey(o));
                items.add(r);
            }
        }
        if (goldRate > 0) {
            List<Sample> pool = new ArrayList<>(byModel.get(names.get(0)).values());
            java.util.Collections.shuffle(pool, rnd);
            int n = (int) Math.max(1, Math.round(goldRate * pool.size()));
            java.nio.file.Files.createDirectories(goldDir);
            for (Sample s : pool.subList(0, Math.min(n, pool.size()))) {
                Path degraded = goldDir.resolve(StudyStore.randomId(8) + ".png");
                writeDegraded(s.file(), degraded, rnd.nextLong());
                Sample d = new Sample(s.prompt(), s.seed(), degraded.toAbsolutePath());
                for (String q : List.of("flaws", "appeal")) {
                    boolean originalLeft = rnd.nextBoolean();
                    ObjectNode it = StudyStore.JSON.createObjectNode();
                    it.put("question", q).put("prompt", s.prompt()).put("seed", s.seed()).put("gold", originalLeft ? "left" : "right");
                    it.set("left", originalLeft ? image(GOLD_ORIGINAL, s, images) : image(GOLD_DEGRADED, d, images));
                    it.set("right", originalLeft ? image(GOLD_DEGRADED, d, images) : image(GOLD_ORIGINAL, s, images));
                    items.add(it);
                }
            }
        }
        if (goldRate > 0 || repeatRate > 0) java.util.Collections.shuffle(items, rnd); // gold and repeated items are not told apart by position
        ObjectNode settings = StudyStore.JSON.createObjectNode();
        ObjectNode ms = settings.putObject("models");
        models.forEach((k, v) -> ms.put(k, v.toAbsolutePath().toString()));
        settings.put("seed", seed);
        store.createStudy(new StudyStore.Study(name, kind, annotators, false, settings), items, images);
        return items.size();
    }

    /** What an A/B item compares: question, prompt, seed and the two models, whatever the sides. */
    public static String comparisonKey(JsonNode payload) {
        return payload.path("question").asText() + "\u0000" + StudyStore.pairKey((ObjectNode) payload);
    }

    /** A 3x3 box blur and Gaussian noise (sigma 24 of 255): visibly worse, same content. */
    static void writeDegraded(Path from, Path to, long seed) throws IOException {
        java.awt.image.BufferedImage src = javax.imageio.ImageIO.read(from.toFile());
        if (src == null) throw new BadFileException(from, "not an image");
        int w = src.getWidth(), h = src.getHeight();
        java.awt.image.BufferedImage out = new java.awt.image.BufferedImage(w, h, java.awt.image.BufferedImage.TYPE_INT_RGB);
        Random r = new Random(seed);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int[] sum = new int[3];
                int n = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int xx = Math.min(w - 1, Math.max(0, x + dx)), yy = Math.min(h - 1, Math.max(0, y + dy)), c = src.getRGB(xx, yy);
                        sum[0] += c >> 16 & 255; sum[1] += c >> 8 & 255; sum[2] += c & 255;
                        n++;
                    }
                int rgb = 0;
                for (int k = 0; k < 3; k++) rgb = rgb << 8 | Math.min(255, Math.max(0, (int) Math.round(sum[k] / (double) n + 24 * r.nextGaussian())));
                out.setRGB(x, y, rgb);
            }
        javax.imageio.ImageIO.write(out, "png", to.toFile());
    }

    private static ObjectNode image(String model, Sample s, Map<String, String> images) {
        String id = StudyStore.randomId(12);
        images.put(id, s.file().toString());
        ObjectNode o = StudyStore.JSON.createObjectNode();
        o.put("model", model).put("image", id).put("file", s.file().toString());
        return o;
    }

    private static JsonNode tryParse(String s) {
        try {
            return StudyStore.JSON.readTree(s);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            return null;
        }
    }

    /** {@code prompt -> [questions]}: a JSON object, or JSON lines of {@code {"prompt", "questions"}}. */
    static Map<String, List<String>> questions(Path f) throws IOException {
        if (f == null) throw new IllegalArgumentException("an alignment study needs --questions FILE");
        if (!Files.isRegularFile(f)) throw new BadFileException(f, "no such questions file");
        Map<String, List<String>> out = new LinkedHashMap<>();
        String text = Files.readString(f).strip();
        try {
            String first = text.lines().findFirst().orElse("");
            JsonNode head = first.isBlank() ? null : tryParse(first);
            boolean lines = head != null && head.path("prompt").isTextual() && head.path("questions").isArray();
            if (!lines) {
                StudyStore.JSON.readTree(text).fields().forEachRemaining(e -> {
                    List<String> qs = new ArrayList<>();
                    e.getValue().forEach(q -> qs.add(q.asText()));
                    out.put(e.getKey(), qs);
                });
            } else {
                for (String line : text.split("\n")) {
                    if (line.isBlank()) continue;
                    JsonNode j = StudyStore.JSON.readTree(line);
                    List<String> qs = new ArrayList<>();
                    j.path("questions").forEach(q -> qs.add(q.asText()));
                    out.put(j.path("prompt").asText(), qs);
                }
            }
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new BadFileException(f, "malformed JSON (" + e.getOriginalMessage() + ")");
        }
        return out;
    }
}
