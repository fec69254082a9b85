package org.pixelpost.io;

import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.run.OutputDir;

import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** Writes go to a temporary name beside the target and are renamed into place when complete. */
public final class AtomicFiles {
    private AtomicFiles() {}

    public interface Writer {
        void write(Path tmp) throws IOException;
    }

    public static void write(Path target, Writer writer) throws IOException {
        Path dir = target.toAbsolutePath().getParent();
        if (dir != null) Files.createDirectories(dir);
        Path tmp = dir.resolve("." + target.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        try {
            try {
                writer.write(tmp);
            } catch (BadFileException e) {
                throw e;
            } catch (IOException e) {
                throw new BadFileException(target, "cannot write (" + rootCause(e) + ")", e);
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The innermost message of an I/O failure: the operating system's reason ("No space left on device"). */
    static String rootCause(Throwable e) {
        Throwable c = e;
        while (c.getCause() != null && c.getCause() != c) c = c.getCause();
        if (c instanceof java.nio.file.FileSystemException f) return OutputDir.reason(f);
        return c.getMessage() != null ? c.getMessage() : c.getClass().getSimpleName();
    }

    /** Deletes a file or a folder with everything in it; nothing if it is not there. */
    public static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var s = Files.walk(p)) {
            for (Path q : s.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(q);
        }
    }

    public static void writeString(Path target, String text) throws IOException {
        write(target, tmp -> Files.writeString(tmp, text));
    }
}
