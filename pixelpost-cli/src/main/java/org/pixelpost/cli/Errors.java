package org.pixelpost.cli;

import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import org.pixelpost.io.check.InvalidValueException;

/** How a failed command reads to its user: one line naming the path or option and the problem, and an exit code. */
final class Errors {
    private Errors() {}

    /** 2 for a usage error (an option or config value), 130/143 for an interrupted run, 1 otherwise. */
    static int exitCode(Throwable e) {
        if (e instanceof InvalidValueException || e instanceof picocli.CommandLine.ParameterException) return 2;
        if (e instanceof Interrupted i) return i.exitCode;
        if (e instanceof IllegalArgumentException) return 2;
        return 1;
    }

    static String describe(Throwable e) {
        if (e instanceof OutOfMemoryError) return "out of memory (" + e.getMessage() + "); give the JVM more with PIXELPOST_JAVA_OPTS=-Xmx16g or use smaller batches";
        if (e instanceof StackOverflowError) return "input nested too deeply to process";
        if (e instanceof FileSystemException f) {
            String path = f.getFile() == null ? "" : f.getFile();
            String reason = f.getReason() != null ? f.getReason()
                : f instanceof AccessDeniedException ? "permission denied"
                : f instanceof NoSuchFileException ? "no such file or folder"
                : f instanceof NotDirectoryException ? "not a folder"
                : f instanceof FileAlreadyExistsException ? "already exists" : f.getClass().getSimpleName();
            return path + (f.getOtherFile() != null ? " -> " + f.getOtherFile() : "") + ": " + reason;
        }
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }

    /** A run stopped by a signal after saving what it could; the message says where to resume from. */
    static final class Interrupted extends RuntimeException {
        final int exitCode;

        Interrupted(String message, int exitCode) {
            super(message);
            this.exitCode = exitCode;
        }
    }
}
