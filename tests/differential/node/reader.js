// Node mailparser as an independent MIME reader for tests/differential.
//
// One long-lived process: reads one file path per line on stdin, parses that message with
// mailparser's streaming MailParser (what Node mail software such as WildDuck and many
// webmail back ends show), and writes one JSON line per message on stdout:
//   {"attachments": [{"type", "filename", "disposition", "sha256", "size", "head"}],
//    "texts": ["..."], "html": true|false, "error": null}
// "texts" are the inline text/plain parts mailparser decoded (from its own tree, without the
// header lines it adds above an inline attached message); "head" is an attachment's first
// 512 bytes (base64). An attached message (message/rfc822) is opened and read the same way,
// as a person opening it would: its parts are listed, not the message itself.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const readline = require('readline');
const { MailParser } = require('mailparser');

const MAX_DEPTH = 8;

function parse(buffer, depth) {
    return new Promise(resolve => {
        const result = { attachments: [], texts: [], html: false, error: null };
        const parser = new MailParser({
            skipHtmlToText: true,
            skipTextToHtml: true,
            skipImageLinks: true,
            skipTextLinks: true
        });
        const pending = [];
        parser.on('data', data => {
            if (data.type !== 'attachment') {
                return;
            }
            const type = (data.contentType || '').toLowerCase();
            const hash = crypto.createHash('sha256');
            const chunks = [];
            let size = 0;
            let head = Buffer.alloc(0);
            const message = type === 'message/rfc822' && depth < MAX_DEPTH;
            pending.push(
                new Promise(done => {
                    data.content.on('data', chunk => {
                        if (head.length < 512) {
                            head = Buffer.concat([head, chunk]).subarray(0, 512);
                        }
                        if (message) {
                            chunks.push(chunk);
                        }
                        size += chunk.length;
                        hash.update(chunk);
                    });
                    data.content.on('end', () => {
                        data.release();
                        if (message) {
                            parse(Buffer.concat(chunks), depth + 1).then(inner => {
                                result.attachments.push(...inner.attachments);
                                result.texts.push(...inner.texts);
                                result.html = result.html || inner.html;
                                result.error = result.error || inner.error;
                                done();
                            });
                            return;
                        }
                        result.attachments.push({
                            type,
                            filename: data.filename || '',
                            disposition: (data.contentDisposition || '').toLowerCase(),
                            sha256: hash.digest('hex'),
                            size,
                            head: head.toString('base64')
                        });
                        done();
                    });
                })
            );
        });
        parser.on('error', err => {
            result.error = String(err && err.message ? err.message : err);
            resolve(result);
        });
        parser.on('end', () =>
            Promise.all(pending).then(() => {
                const walk = node => {
                    if (!node) {
                        return;
                    }
                    if (!node.isAttachment && typeof node.textContent === 'string') {
                        if (node.contentType === 'text/plain') {
                            result.texts.push(node.textContent);
                        } else if (node.contentType === 'text/html') {
                            result.html = true;
                        }
                    }
                    (node.children || []).forEach(walk);
                };
                walk(parser.tree);
                resolve(result);
            })
        );
        parser.end(buffer);
    });
}

async function main() {
    const lines = readline.createInterface({ input: process.stdin, terminal: false });
    for await (const line of lines) {
        if (!line) {
            continue;
        }
        let result;
        try {
            result = await parse(fs.readFileSync(line), 0);
        } catch (err) {
            result = { attachments: [], texts: [], html: false, error: String(err) };
        }
        process.stdout.write(JSON.stringify(result) + '\n');
    }
}

main();
