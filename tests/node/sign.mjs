// Sign a message with EIP-191 personal_sign using ethers (a library
// independent of vibex). Usage: node sign.mjs PRIVATE_KEY MESSAGE_FILE
// Prints {address, signature}.
import { Wallet } from "ethers";
import { readFileSync } from "node:fs";

const [key, file] = process.argv.slice(2);
const message = readFileSync(file, "utf8");
const w = new Wallet(key);
console.log(JSON.stringify({ address: w.address, signature: await w.signMessage(message) }));
