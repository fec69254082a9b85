package org.pixelpost.io;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.BadFileException;
import org.pixelpost.io.SafeTensors;
import org.pixelpost.io.TorchCheckpoint;

/** Reads a state dict from safetensors or a PyTorch zip checkpoint, chosen by the file's first bytes. */
public final class Checkpoints {
    private Checkpoints() {}

    public static Map<String, Tensor> read(Path file) throws IOException {
        String n = file.getFileName().toString();
        if (n.endsWith(".safetensors")) return SafeTensors.read(file);
        if (n.endsWith(".pth") || n.endsWith(".pt") || n.endsWith(".ckpt") || n.endsWith(".bin")) return TorchCheckpoint.readStateDict(file);
        throw new BadFileException(file, "unknown checkpoint type (expected .safetensors, .pth, .pt, .ckpt or .bin)");
    }
}
