package org.pixelpost.model.autoencoder;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;

/**
 * Resolves {@code --autoencoder NAME|PATH}: an explicit path, then {@code $PIXELPOST_WEIGHTS/NAME/},
 * then the user cache ({@code $XDG_CACHE_HOME/pixelpost/weights/NAME/}), then a download of the
 * pinned public originals, checked against their sha256.
 */
public final class Autoencoders {
    private Autoencoders() {}

    /** A pinned public file; {@code sha256} null where no checksum is pinned (then it is never downloaded). */
    record Pinned(String file, String url, String sha256) {}

    private static final String TAESD_BASE = "https://github.com/madebyollin/taesd/raw/5cccb12dc72074a4be35680c3b108548a7c69978/";

    static final Map<String, List<Pinned>> KNOWN = Map.of(
        "taef2", List.of(
            new Pinned("taef2_encoder.pth", TAESD_BASE + "taef2_encoder.pth", "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6"),
            new Pinned("taef2_decoder.pth", TAESD_BASE + "taef2_decoder.pth", "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5")),
        "taesd", List.of(
            new Pinned("taesd_encoder.pth", TAESD_BASE + "taesd_encoder.pth", null),
            new Pinned("taesd_decoder.pth", TAESD_BASE + "taesd_decoder.pth", null)));

    /** Names that {@link #load} knows without a path. */
    public static List<String> knownNames() {
        return List.of("taef2", "taesd");
    }

    /** Loads the autoencoder that {@code spec} names: a known name, a folder or a checkpoint file. */
    public static Autoencoder load(String spec) throws IOException {
        Path p = Paths.get(spec);
        if (Files.exists(p)) return loadPath(p);
        String name = spec.toLowerCase(java.util.Locale.ROOT);
        if (!KNOWN.containsKey(name)) throw new IOException("unknown autoencoder '" + spec
            + "': not an existing path, and not one of " + knownNames());
        return loadPath(resolve(name));
    }

    /** The folder holding {@code name}'s files, fetching the pinned originals into the cache when needed. */
    public static Path resolve(String name) throws IOException {
        String env = System.getenv("PIXELPOST_WEIGHTS");
        return resolve(name, env == null || env.isBlank() ? null : Paths.get(env), cacheDir());
    }

    /** The local folder holding {@code name}'s files, without downloading. */
    public static Path resolveLocal(String name) throws IOException {
        String env = System.getenv("PIXELPOST_WEIGHTS");
        for (Path dir : new Path[] {env == null || env.isBlank() ? null : Paths.get(env).resolve(name), cacheDir().resolve(name)})
            if (dir != null && hasAll(dir, name)) return dir;
        throw new IOException(name + " is not in $PIXELPOST_WEIGHTS or the cache");
    }

    /** As {@link #resolve(String)} with the weights folder ({@code null}: unset) and cache given. */
    static Path resolve(String name, Path weightsRoot, Path cacheRoot) throws IOException {
        List<Pinned> files = KNOWN.get(name);
        if (files == null) throw new IOException("unknown autoencoder '" + name + "'; known: " + knownNames());
        List<Path> looked = new ArrayList<>();
        if (weightsRoot != null) looked.add(weightsRoot.resolve(name));
        Path cache = cacheRoot.resolve(name);
        looked.add(cache);
        for (Path dir : looked) if (hasAll(dir, name)) return dir;
        List<String> problems = new ArrayList<>();
        for (Pinned f : files) {
            if (hasOne(cache, f.file)) continue;
            if (f.sha256 == null) {
                problems.add(f.file + ": no checksum is pinned for it, so it is not downloaded automatically");
                continue;
            }
            try {
                download(f, cache.resolve(f.file));
            } catch (IOException e) {
                problems.add(f.file + ": download from " + f.url + " failed (" + (e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName()) + ")");
            }
        }
        if (hasAll(cache, name)) return cache;
        StringBuilder msg = new StringBuilder("autoencoder '" + name + "' is not available.\n  needs: ");
        files.forEach(f -> msg.append(f.file).append(' '));
        msg.append("(or the same names with .safetensors)\n  looked in: ");
        if (weightsRoot == null) msg.append("$PIXELPOST_WEIGHTS/").append(name).append(" (variable unset), ");
        looked.forEach(d -> msg.append(d).append(", "));
        msg.setLength(msg.length() - 2);
        problems.forEach(pr -> msg.append("\n  ").append(pr));
        msg.append("\n  to supply it: put the files in ").append(cache).append(" or in $PIXELPOST_WEIGHTS/").append(name)
            .append("/, or pass --autoencoder /path/to/folder");
        throw new IOException(msg.toString());
    }

    static Path cacheDir() {
        return org.pixelpost.io.tensorfile.Checkpoints.userCache("weights");
    }

    private static boolean hasAll(Path dir, String name) {
        return hasOne(dir, name + "_encoder.pth") && hasOne(dir, name + "_decoder.pth");
    }

    private static boolean hasOne(Path dir, String pthName) {
        String stem = pthName.substring(0, pthName.length() - 4);
        return Files.isRegularFile(dir.resolve(pthName)) || Files.isRegularFile(dir.resolve(stem + ".safetensors"));
    }

    private static void download(Pinned f, Path target) throws IOException {
        System.err.println("downloading " + f.url);
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(15)).followRedirects(HttpClient.Redirect.NORMAL).build();
        HttpResponse<InputStream> r;
        URI uri = URI.create(f.url);
        try {
            r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(5)).build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        } catch (IOException e) {
            // a failure to connect is not a failure to write the file: say which it is
            Throwable c = e;
            while (c.getCause() != null) c = c.getCause();
            throw new IOException("cannot reach " + uri.getHost() + ": " + (c.getMessage() != null ? c.getMessage() : c.getClass().getSimpleName())
                + "; offline?", e);
        }
        if (r.statusCode() != 200) {
            r.body().close();
            throw new IOException("HTTP " + r.statusCode());
        }
        AtomicFiles.write(target, tmp -> {
            try (InputStream in = r.body()) {
                Files.copy(in, tmp, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
            String got = sha256(tmp);
            if (!got.equals(f.sha256)) throw new IOException("sha256 " + got + " does not match the pinned " + f.sha256);
        });
    }

    static String sha256(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) md.update(buf, 0, n);
            return HexFormat.of().formatHex(md.digest());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * A folder with {@code *_encoder} and {@code *_decoder} files (TAESD family), a diffusers folder
     * ({@code config.json} naming AutoencoderKL or AutoencoderTiny), or a single AutoencoderKL checkpoint.
     */
    static Autoencoder loadPath(Path p) throws IOException {
        if (Files.isRegularFile(p)) return AutoencoderKL.load(p);
        Path cfg = p.resolve("config.json");
        if (Files.isRegularFile(cfg)) {
            String cls = new ObjectMapper().readTree(cfg.toFile()).path("_class_name").asText("");
            if (cls.equals("AutoencoderKL")) return AutoencoderKL.load(p);
            if (cls.equals("AutoencoderTiny")) {
                Path w = p.resolve("diffusion_pytorch_model.safetensors");
                return TinyAutoencoder.load(p.getFileName().toString(), w, w);
            }
        }
        Path enc = null, dec = null;
        try (var files = Files.list(p)) {
            for (Path f : files.sorted().toList()) {
                String n = f.getFileName().toString();
                if (!(n.endsWith(".pth") || n.endsWith(".safetensors"))) continue;
                // prefer safetensors: memory-mapped and needs no unpickling
                if (n.contains("_encoder.") && (enc == null || n.endsWith(".safetensors"))) enc = f;
                if (n.contains("_decoder.") && (dec == null || n.endsWith(".safetensors"))) dec = f;
            }
        }
        if (enc == null || dec == null) throw new BadFileException(p, "no autoencoder here: expected NAME_encoder.pth and NAME_decoder.pth"
            + " (or .safetensors), or a diffusers folder with config.json");
        String n = enc.getFileName().toString();
        return TinyAutoencoder.load(n.substring(0, n.indexOf("_encoder.")), enc, dec);
    }
}
