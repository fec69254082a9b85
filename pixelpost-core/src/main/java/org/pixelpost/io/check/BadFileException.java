package org.pixelpost.io.check;

import java.io.IOException;
import java.nio.file.Path;

/** A file that cannot be used: the message names the file and the problem. */
public class BadFileException extends IOException {
    private final Path file;

    public BadFileException(Path file, String problem) {
        super(file + ": " + problem);
        this.file = file;
    }

    public BadFileException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
        this.file = file;
    }

    public Path file() {
        return file;
    }
}
