package org.pixelpost.io.tensorfile;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.io.tensorfile.TorchCheckpoint;

/** Reads a state dict from safetensors or a PyTorch zip checkpoint, chosen by the file's first bytes. */
public final class Checkpoints {
    private Checkpoints() {}

    /** The first of {@code names} that is a file in {@code dir}; refused with what was looked for when none is. */
    public static Path find(Path dir, String... names) throws BadFileException {
        for (String n : names) if (java.nio.file.Files.isRegularFile(dir.resolve(n))) return dir.resolve(n);
        throw new BadFileException(dir, "no weights in this folder (looked for " + String.join(", ", names) + ")");
    }

    /**
     * The user cache folder {@code sub}: {@code $XDG_CACHE_HOME/pixelpost/SUB}, by default
     * {@code ~/.cache/pixelpost/SUB}.
     */
    public static Path userCache(String sub) {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("pixelpost").resolve(sub);
    }

    public static Map<String, Tensor> read(Path file) throws IOException {
        String n = file.getFileName().toString();
        if (n.endsWith(".safetensors")) return SafeTensors.read(file);
        if (n.endsWith(".pth") || n.endsWith(".pt") || n.endsWith(".ckpt") || n.endsWith(".bin")) return TorchCheckpoint.readStateDict(file);
        throw new BadFileException(file, "unknown checkpoint type (expected .safetensors, .pth, .pt, .ckpt or .bin)");
    }
}
