package org.pixelpost;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.pixelpost.io.fetch.Tar;

/** Real data for tests: TAEF2 from ../shared, emoji PNGs from the npm package (fetched once, cached). */
public final class TestData {
    public static final String EMOJI_PACKAGE = "emoji-datasource-google@16.0.0";
    /** A fixed handful: a face, an animal, a heart, food, a vehicle, weather, a plant, a skin-tone variant. */
    public static final List<String> EMOJI = List.of("1f600", "1f436", "2764-fe0f", "1f355", "1f680", "1f308", "1f33b", "1f44d-1f3fd");
    public static final List<String> CAPTIONS = List.of("grinning face", "dog face", "red heart", "slice of pizza", "rocket",
        "rainbow", "sunflower", "thumbs up: medium skin tone");
    /** A second, disjoint handful for held-out losses. */
    public static final List<String> EMOJI_VAL = List.of("1f431", "1f34e", "2b50", "1f697", "1f319", "1f333", "1f41f", "1f525");
    public static final List<String> CAPTIONS_VAL = List.of("cat face", "red apple", "star", "automobile", "crescent moon",
        "deciduous tree", "fish", "fire");

    private TestData() {}

    /** {@code ../shared} beside the checkout: the build passes it as {@code -Dpixelpost.shared}; otherwise looked for upwards. */
    public static Path shared() {
        String prop = System.getProperty("pixelpost.shared");
        Path p = prop != null ? Paths.get(prop).toAbsolutePath().normalize() : Paths.get("..", "shared").toAbsolutePath().normalize();
        if (prop == null && !Files.isDirectory(p)) p = Paths.get("..", "..", "shared").toAbsolutePath().normalize();
        if (!Files.isDirectory(p)) throw new IllegalStateException("tests need ../shared beside the project (looked at " + p + ")");
        return p;
    }

    /** The fixtures this project wrote with the Python peer ({@code bench/fixtures/pixart_t5_fixtures.py}), from the core module's test resources. */
    public static Path fixtures() {
        try {
            java.net.URL u = TestData.class.getResource("/fixtures");
            if (u == null || !u.getProtocol().equals("file")) throw new IllegalStateException("the fixtures are not on the class path as a folder: " + u);
            return Paths.get(u.toURI());
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    public static Path taef2() {
        return shared().resolve("weights/taef2");
    }

    /** Copies a folder tree. */
    public static void copyTree(Path from, Path to) throws IOException {
        try (var s = Files.walk(from)) {
            for (Path f : s.toList()) {
                Path t = to.resolve(from.relativize(f).toString());
                if (Files.isDirectory(f)) Files.createDirectories(t);
                else Files.copy(f, t);
            }
        }
    }

    /** The package tarball: $PIXELPOST_EMOJI_TGZ, the cache, or {@code npm pack} into the cache. */
    public static synchronized Path emojiTarball() throws IOException, InterruptedException {
        String env = System.getenv("PIXELPOST_EMOJI_TGZ");
        if (env != null && Files.isRegularFile(Paths.get(env))) return Paths.get(env);
        Path cache = Paths.get(System.getProperty("user.home"), ".cache", "pixelpost", "npm");
        Path tgz = cache.resolve("emoji-datasource-google-16.0.0.tgz");
        if (Files.isRegularFile(tgz)) return tgz;
        Files.createDirectories(cache);
        Process p = new ProcessBuilder("npm", "pack", EMOJI_PACKAGE, "--pack-destination", cache.toString())
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (p.waitFor() != 0 || !Files.isRegularFile(tgz)) throw new IOException("npm pack " + EMOJI_PACKAGE + " failed");
        return tgz;
    }

    /** The 64x64 PNGs of {@link #EMOJI}, extracted into {@code dir}. */
    public static List<Path> emojiPngs(Path dir) throws IOException, InterruptedException {
        return emojiPngs(dir, EMOJI);
    }

    /** A captioned image folder ({@code captions.jsonl}) of the given emoji. */
    public static Path captionedFolder(Path dir, List<String> codes, List<String> captions) throws IOException, InterruptedException {
        Files.createDirectories(dir);
        emojiPngs(dir, codes);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < codes.size(); i++)
            b.append("{\"file\": \"").append(codes.get(i)).append(".png\", \"caption\": \"").append(captions.get(i)).append("\"}\n");
        Files.writeString(dir.resolve("captions.jsonl"), b.toString());
        return dir;
    }

    public static List<Path> emojiPngs(Path dir, List<String> codes) throws IOException, InterruptedException {
        Set<String> want = Set.copyOf(codes.stream().map(e -> "package/img/google/64/" + e + ".png").toList());
        List<Path> out = new ArrayList<>();
        Tar.read(emojiTarball(), (name, size, in) -> {
            if (want.contains(name)) {
                Path f = dir.resolve(name.substring(name.lastIndexOf('/') + 1));
                Files.copy(in, f);
                out.add(f);
            }
            return out.size() < want.size();
        });
        if (out.size() != want.size()) throw new IOException("emoji package lacks some of " + codes);
        out.sort(null);
        return out;
    }
}
