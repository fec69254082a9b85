package org.pixelpost.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32;
import org.pixelpost.metrics.Metrics;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.Images;
import org.pixelpost.io.fetch.NpmPackage;
import org.pixelpost.io.fetch.Tar;

/**
 * A captioned image set from the npm package {@code emoji-datasource-google@16.0.0}: its 64x64
 * PNGs, captioned from {@code emoji.json} (the emoji's name, lower-cased, and the skin tone for
 * skin-tone variants). Splits are fixed by a hash of each emoji's code point sequence.
 */
public final class EmojiDataset {
    public static final String PACKAGE = "emoji-datasource-google@16.0.0";
    /** npm's published checksums of the tarball. */
    static final String SHA1 = "a80ac3e8106cbd4d8648ce758aa099e8827b6157";
    static final String SHA512_BASE64 = "ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==";
    static final Map<String, String> TONES = Map.of("1F3FB", "light skin tone", "1F3FC", "medium-light skin tone",
        "1F3FD", "medium skin tone", "1F3FE", "medium-dark skin tone", "1F3FF", "dark skin tone");
    /** Categories of pictures (not flags, not symbol glyphs): the pool of the curated SFT subset. */
    static final Set<String> PICTURE_CATEGORIES = Set.of("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
        "Travel & Places", "Activities", "Objects");

    public record Entry(String code, String image, String caption, String category, boolean skinVariant) {}

    /** What was built: counts per split. */
    public record Summary(Path out, int images, int train, int val, int sft, int eval) {}

    private EmojiDataset() {}

    /** The package, pinned to npm's published checksums of its tarball. */
    public static final NpmPackage NPM = new NpmPackage("emoji-datasource-google", "16.0.0", SHA1, SHA512_BASE64);

    /** Runs {@code npm pack} into {@code dir} and returns the tarball. */
    public static Path npmPack(Path dir) throws IOException {
        return NPM.fetch(dir, "pass --tarball PATH to use a downloaded copy");
    }

    /** Checks the tarball against npm's published sha1 and sha512. */
    public static void verify(Path tgz) throws IOException {
        NPM.verify(tgz);
    }

    /** The entries of {@code emoji.json} that have a Google image, skin-tone variants included. */
    static List<Entry> entries(JsonNode emojiJson) {
        List<Entry> out = new ArrayList<>();
        for (JsonNode e : emojiJson) {
            if (!e.path("has_img_google").asBoolean()) continue;
            String name = e.path("name").isTextual() ? e.get("name").asText() : e.path("short_name").asText().replace('_', ' ');
            String base = name.toLowerCase(Locale.ROOT);
            String category = e.path("category").asText();
            out.add(new Entry(e.get("unified").asText(), e.get("image").asText(), base, category, false));
            JsonNode sv = e.get("skin_variations");
            if (sv == null) continue;
            for (var it = sv.fields(); it.hasNext(); ) {
                var v = it.next();
                if (!v.getValue().path("has_img_google").asBoolean()) continue;
                List<String> tones = new ArrayList<>();
                for (String t : v.getKey().split("-")) tones.add(TONES.getOrDefault(t, t));
                out.add(new Entry(v.getValue().get("unified").asText(), v.getValue().get("image").asText(),
                    base + ": " + String.join(", ", tones), category, true));
            }
        }
        return out;
    }

    /** 0..99 from the code point sequence: the split never depends on order or on other entries. */
    static int bucket(String code) {
        CRC32 c = new CRC32();
        c.update(code.getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        return (int) (c.getValue() % 100);
    }

    /**
     * Builds the set in {@code out}: {@code images/}, and {@code train/}, {@code val/}, {@code sft/}
     * caption files, {@code eval/prompts.txt} with its reference images, {@code manifest.json}.
     * Splits: validation is the 5% of emoji whose bucket is below 5 (the rest is train); the
     * evaluation prompts are the first 32 non-variant pictures of the validation split; the curated
     * SFT subset is the train pictures (no flags, symbol glyphs or skin-tone duplicates) whose
     * Laplacian variance is at or above the median of that pool: the detailed half.
     *
     * @param limit if positive, keep only this many training images (for quick runs)
     */
    public static Summary build(Path tgz, Path out, int limit) throws IOException {
        verify(tgz);
        Path images = out.resolve("images");
        Files.createDirectories(images);
        byte[][] emojiJson = new byte[1][];
        Map<String, byte[]> pngs = new HashMap<>();
        Tar.read(tgz, (name, size, in) -> {
            if (name.equals("package/emoji.json")) emojiJson[0] = in.readAllBytes();
            else if (name.startsWith("package/img/google/64/") && name.endsWith(".png")) pngs.put(name.substring(name.lastIndexOf('/') + 1), in.readAllBytes());
            return true;
        });
        if (emojiJson[0] == null) throw new BadFileException(tgz, "has no package/emoji.json");
        List<Entry> all = entries(new ObjectMapper().readTree(emojiJson[0]));
        List<Entry> train = new ArrayList<>(), val = new ArrayList<>();
        int missing = 0;
        for (Entry e : all) {
            byte[] png = pngs.get(e.image);
            if (png == null) {
                missing++;
                continue;
            }
            Path f = images.resolve(e.image);
            if (!Files.isRegularFile(f) || Files.size(f) != png.length) AtomicFiles.write(f, tmp -> Files.write(tmp, png));
            (bucket(e.code) < 5 ? val : train).add(e);
        }
        if (missing > all.size() / 10) throw new BadFileException(tgz, missing + " of " + all.size() + " images are missing from the package");
        // every image must decode
        for (Entry e : all) if (pngs.containsKey(e.image)) Images.read(images.resolve(e.image));
        if (limit > 0 && train.size() > limit) train = spread(train, limit);

        List<Entry> pool = new ArrayList<>();
        Map<Entry, Double> detail = new LinkedHashMap<>();
        for (Entry e : train)
            if (!e.skinVariant && PICTURE_CATEGORIES.contains(e.category)) {
                pool.add(e);
                detail.put(e, Metrics.laplacianVariance(Images.load(images.resolve(e.image), 64).unsqueeze(0)));
            }
        double[] sorted = detail.values().stream().mapToDouble(Double::doubleValue).sorted().toArray();
        double median = sorted.length == 0 ? 0 : sorted[sorted.length / 2];
        List<Entry> sft = pool.stream().filter(e -> detail.get(e) >= median).toList();
        List<Entry> eval = val.stream().filter(e -> !e.skinVariant && PICTURE_CATEGORIES.contains(e.category))
            .sorted(java.util.Comparator.comparing(Entry::code)).limit(32).toList();

        writeCaptions(out.resolve("train"), train);
        writeCaptions(out.resolve("val"), val);
        writeCaptions(out.resolve("sft"), sft);
        writeCaptions(out.resolve("eval"), eval);
        AtomicFiles.writeString(out.resolve("eval/prompts.txt"), String.join("\n", eval.stream().map(Entry::caption).toList()) + "\n");
        ObjectNode m = new ObjectMapper().createObjectNode();
        m.put("package", PACKAGE).put("sha1", SHA1).put("images", train.size() + val.size()).put("train", train.size())
            .put("val", val.size()).put("sft", sft.size()).put("eval", eval.size()).put("limit", limit)
            .put("split_rule", "validation: CRC32(unified code) % 100 < 5; evaluation: the first 32 validation pictures by code")
            .put("sft_rule", "train pictures (categories " + PICTURE_CATEGORIES.stream().sorted().toList()
                + ", no skin-tone variants) with Laplacian variance >= the pool median " + String.format("%.5f", median));
        AtomicFiles.writeString(out.resolve("manifest.json"), m.toPrettyString());
        return new Summary(out, train.size() + val.size(), train.size(), val.size(), sft.size(), eval.size());
    }

    /** {@code n} items spread evenly over the list (a quick run still sees every category). */
    public static <T> List<T> spread(List<T> l, int n) {
        if (n >= l.size()) return l;
        List<T> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(l.get((int) ((long) i * l.size() / n)));
        return out;
    }

    private static void writeCaptions(Path dir, List<Entry> entries) throws IOException {
        Files.createDirectories(dir);
        ObjectMapper om = new ObjectMapper();
        StringBuilder b = new StringBuilder();
        for (Entry e : entries) {
            ObjectNode j = om.createObjectNode();
            j.put("file", "../images/" + e.image).put("caption", e.caption).put("code", e.code).put("category", e.category);
            b.append(j).append('\n');
        }
        AtomicFiles.writeString(dir.resolve("captions.jsonl"), b.toString());
    }
}
