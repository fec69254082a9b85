package org.pixelpost.io.tensorfile;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
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

    /**
     * The weights of a component folder under the first of {@code names} it has, as one file or as
     * shards the way transformers and diffusers write large models: {@code NAME.index.json} mapping
     * each key to its shard ({@code model-00001-of-00004.safetensors}, or {@code pytorch_model-*.bin}
     * through the restricted unpickler), or, without an index, every {@code -0000k-of-0000n} shard
     * of one set. A shard that is missing or lacks a key its index lists is refused by name.
     */
    public static Map<String, Tensor> readFolder(Path dir, String... names) throws IOException {
        for (String n : names) {
            if (java.nio.file.Files.isRegularFile(dir.resolve(n))) return read(dir.resolve(n));
            Path index = dir.resolve(n + ".index.json");
            if (java.nio.file.Files.isRegularFile(index)) return readIndexed(dir, index);
            List<Path> shards = shardsWithoutIndex(dir, n);
            if (!shards.isEmpty()) {
                Map<String, Tensor> all = new java.util.LinkedHashMap<>();
                for (Path s : shards) all.putAll(read(s));
                return all;
            }
        }
        throw new BadFileException(dir, "no weights in this folder (looked for " + String.join(", ", names) + ", their .index.json and their shards)");
    }

    /** A sharded checkpoint by its index ({@code {"weight_map": {key: shard file}}}). */
    static Map<String, Tensor> readIndexed(Path dir, Path index) throws IOException {
        com.fasterxml.jackson.databind.JsonNode j;
        try {
            j = new com.fasterxml.jackson.databind.ObjectMapper().readTree(index.toFile());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new BadFileException(index, "malformed JSON (" + e.getOriginalMessage() + ")");
        }
        com.fasterxml.jackson.databind.JsonNode map = j == null ? null : j.get("weight_map");
        if (map == null || !map.isObject() || map.size() == 0) throw new BadFileException(index, "no weight_map: not a sharded checkpoint index");
        Map<String, List<String>> byShard = new java.util.LinkedHashMap<>();
        map.fields().forEachRemaining(e -> byShard.computeIfAbsent(e.getValue().asText(), k -> new java.util.ArrayList<>()).add(e.getKey()));
        for (String shard : byShard.keySet()) {
            Path f = dir.resolve(shard).normalize();
            if (!f.startsWith(dir.normalize()) || shard.contains("/") || shard.contains("\\"))
                throw new BadFileException(index, "lists shard '" + shard + "', which is not a file name in the folder");
            if (!java.nio.file.Files.isRegularFile(f))
                throw new BadFileException(index, "lists shard " + shard + " (" + byShard.get(shard).size() + " weights), which is not in " + dir);
        }
        Map<String, Tensor> all = new java.util.LinkedHashMap<>();
        for (Map.Entry<String, List<String>> e : byShard.entrySet()) {
            Path f = dir.resolve(e.getKey());
            Map<String, Tensor> part = read(f);
            for (String k : e.getValue())
                if (!part.containsKey(k)) throw new BadFileException(f, "lacks weight " + k + ", which " + index.getFileName() + " places in it");
            all.putAll(part);
        }
        return all;
    }

    /** The shards {@code stem-0000k-of-0000n.ext} of {@code name} in {@code dir}, all n of them; refused naming the first missing one. */
    static List<Path> shardsWithoutIndex(Path dir, String name) throws IOException {
        int dot = name.lastIndexOf('.');
        if (dot < 0 || !java.nio.file.Files.isDirectory(dir)) return List.of();
        String stem = name.substring(0, dot), ext = name.substring(dot);
        java.util.regex.Pattern p = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(stem) + "-(\\d+)-of-(\\d+)" + java.util.regex.Pattern.quote(ext));
        java.util.TreeMap<Integer, Path> found = new java.util.TreeMap<>();
        int total = -1;
        try (var files = java.nio.file.Files.list(dir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                var m = p.matcher(f.getFileName().toString());
                if (!m.matches()) continue;
                if (m.group(1).length() > 6 || m.group(2).length() > 6) throw new BadFileException(f, "is not a shard name (numbers of more than 6 digits)");
                int n = Integer.parseInt(m.group(2)), k = Integer.parseInt(m.group(1));
                if (total >= 0 && n != total) throw new BadFileException(dir, "holds shards of different sets (of " + total + " and of " + n + ")");
                if (k < 1 || k > n) throw new BadFileException(f, "is shard " + k + " of " + n + ": shards count from 1 to " + n);
                total = n;
                found.put(k, f);
            }
        }
        if (found.isEmpty()) return List.of();
        String width = found.firstEntry().getValue().getFileName().toString().replaceAll(".*-(\\d+)-of-.*", "$1");
        for (int k = 1; k <= total; k++)
            if (!found.containsKey(k))
                throw new BadFileException(dir, "shard " + stem + "-" + String.format("%0" + width.length() + "d", k) + "-of-"
                    + String.format("%0" + width.length() + "d", total) + ext + " is missing (" + found.size() + " of " + total + " present, and no " + name + ".index.json)");
        return List.copyOf(found.values());
    }

    public static Map<String, Tensor> read(Path file) throws IOException {
        String n = file.getFileName().toString();
        if (n.endsWith(".safetensors")) return SafeTensors.read(file);
        if (n.endsWith(".pth") || n.endsWith(".pt") || n.endsWith(".ckpt") || n.endsWith(".bin")) return TorchCheckpoint.readStateDict(file);
        throw new BadFileException(file, "unknown checkpoint type (expected .safetensors, .pth, .pt, .ckpt or .bin)");
    }
}
