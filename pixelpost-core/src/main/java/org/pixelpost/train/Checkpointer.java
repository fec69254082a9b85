package org.pixelpost.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.SafeTensors;

/**
 * The checkpoint layout of a run folder: {@code DIR/step-NNNNNN/} holding one safetensors file
 * per part (weights, optimizer, EMA) and {@code trainer.json}, written under a temporary name and
 * renamed, the last {@code keep} kept.
 *
 * @param dir the checkpoints folder; @param every a checkpoint every N steps (0: only at the end)
 */
public record Checkpointer(Path dir, int every, int keep) {
    public static final String STATE = "trainer.json";

    /** One checkpoint read back: its parts by name and its trainer state. */
    public record Loaded(Path path, Map<String, Map<String, Tensor>> parts, JsonNode state) {}

    /** Where checkpoint {@code step} is (or will be) written. */
    public Path path(long step) {
        return dir.resolve(String.format("step-%06d", step));
    }

    public boolean due(long step, long total) {
        return (every > 0 && step % every == 0) || step == total;
    }

    /** Writes {@code parts} (name -> tensors, as {@code name.safetensors}) and {@code state} as checkpoint {@code step}. */
    public Path save(long step, Map<String, Map<String, Tensor>> parts, ObjectNode state) throws IOException {
        Files.createDirectories(dir);
        removeRemnants();
        Path fin = path(step);
        String name = fin.getFileName().toString();
        Path tmp = dir.resolve("." + name + ".tmp");
        AtomicFiles.deleteTree(tmp);
        Files.createDirectories(tmp);
        for (Map.Entry<String, Map<String, Tensor>> e : parts.entrySet())
            SafeTensors.write(tmp.resolve(e.getKey() + ".safetensors"), e.getValue());
        AtomicFiles.writeString(tmp.resolve(STATE), state.toPrettyString());
        AtomicFiles.deleteTree(fin);
        Files.move(tmp, fin, StandardCopyOption.ATOMIC_MOVE);
        List<Path> all = list();
        for (int i = 0; i < all.size() - Math.max(1, keep); i++) discard(all.get(i));
        return fin;
    }

    /**
     * Removes a checkpoint by renaming it out of the listing first, so a run killed while deleting
     * never leaves a half-deleted {@code step-N} behind; the hidden remnant goes at the next save.
     */
    private void discard(Path ckpt) throws IOException {
        Path gone = dir.resolve("." + ckpt.getFileName() + ".deleting");
        AtomicFiles.deleteTree(gone);
        Files.move(ckpt, gone, StandardCopyOption.ATOMIC_MOVE);
        AtomicFiles.deleteTree(gone);
    }

    /** What killed runs left: unfinished writes, unfinished deletions, checkpoints without their state. */
    private void removeRemnants() throws IOException {
        try (var s = Files.list(dir)) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                boolean hidden = n.startsWith(".step-") && (n.endsWith(".tmp") || n.endsWith(".deleting"));
                boolean incomplete = n.matches("step-\\d+") && Files.isDirectory(p) && !Files.isRegularFile(p.resolve(STATE));
                if (hidden || incomplete) AtomicFiles.deleteTree(p);
            }
        }
    }

    /** Complete checkpoints (with their {@code trainer.json}), oldest first. */
    public List<Path> list() throws IOException {
        if (!Files.isDirectory(dir)) return List.of();
        try (var s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().matches("step-\\d+") && Files.isRegularFile(p.resolve(STATE)))
                .sorted(Comparator.comparingLong(p -> Long.parseLong(p.getFileName().toString().substring(5)))).toList(); // by step, not by name
        }
    }

    /** {@code latest} or a checkpoint folder's path. */
    public Path resolve(String which) throws IOException {
        if (which.equals("latest")) {
            List<Path> all = list();
            if (all.isEmpty()) throw new BadFileException(dir, "no checkpoint to resume from");
            return all.get(all.size() - 1);
        }
        Path p = Path.of(which);
        if (!Files.isRegularFile(p.resolve(STATE))) throw new BadFileException(p, "not a checkpoint folder (no " + STATE + ")");
        return p;
    }

    /** Reads the named parts (a missing optional part is left out) and the state. */
    public static Loaded read(Path ckpt, List<String> parts) throws IOException {
        JsonNode state;
        try {
            state = new ObjectMapper().readTree(ckpt.resolve(STATE).toFile());
        } catch (IOException e) {
            throw new BadFileException(ckpt.resolve(STATE), "malformed JSON (" + e.getMessage() + ")");
        }
        Map<String, Map<String, Tensor>> out = new LinkedHashMap<>();
        for (String p : parts) {
            Path f = ckpt.resolve(p + ".safetensors");
            if (Files.isRegularFile(f)) out.put(p, SafeTensors.read(f));
        }
        return new Loaded(ckpt, out, state);
    }
}
