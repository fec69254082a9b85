package org.pixelpost.data;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.JsonLines;

/**
 * Images with captions: a folder with {@code captions.jsonl} (one {@code {"file", "caption"}} per
 * line, files relative to the folder) or, without it, a {@code NAME.txt} beside each image.
 */
public record ImageCaptionSet(Path root, List<Item> items) {
    public record Item(Path file, String caption) {}

    public static ImageCaptionSet load(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) throw new BadFileException(dir, "no such data folder");
        List<Item> items = new ArrayList<>();
        Path jsonl = dir.resolve("captions.jsonl");
        if (Files.isRegularFile(jsonl)) {
            for (JsonNode j : JsonLines.read(jsonl, "file", "caption")) items.add(new Item(dir.resolve(j.get("file").asText()), j.get("caption").asText()));
        } else {
            try (var files = Files.list(dir)) {
                for (Path p : files.sorted().toList()) {
                    String n = p.getFileName().toString().toLowerCase(java.util.Locale.ROOT);
                    if (!(n.endsWith(".png") || n.endsWith(".jpg") || n.endsWith(".jpeg"))) continue;
                    Path txt = p.resolveSibling(p.getFileName().toString().replaceFirst("\\.[^.]+$", ".txt"));
                    if (!Files.isRegularFile(txt)) throw new BadFileException(txt, "missing caption for " + p.getFileName() + " (no captions.jsonl in the folder)");
                    items.add(new Item(p, Files.readString(txt).strip()));
                }
            }
        }
        if (items.isEmpty()) throw new BadFileException(dir, "no captioned images (captions.jsonl or IMAGE + IMAGE.txt)");
        return new ImageCaptionSet(dir, List.copyOf(items));
    }

    /**
     * The images of a folder: those its {@code captions.jsonl} lists (possibly outside it), or else
     * its PNG and JPEG files (under it, with {@code recursive}), sorted by path.
     */
    public static List<Path> imageFiles(Path dir, boolean recursive) throws IOException {
        if (Files.isRegularFile(dir.resolve("captions.jsonl"))) return load(dir).items().stream().map(Item::file).toList();
        try (var s = recursive ? Files.walk(dir) : Files.list(dir)) {
            return s.filter(Files::isRegularFile).filter(p -> p.getFileName().toString().toLowerCase(java.util.Locale.ROOT).matches(".*\\.(png|jpe?g)$"))
                .sorted().toList();
        }
    }
}
