// The reference Node socket.io 4.8 server with the events `prise bench`
// uses (join, publish, the message push), for side-by-side figures.
//   node server.mjs PORT        prints "listening PORT" when ready
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 0);
const http = createServer();
const io = new Server(http, {
  // Same feature set as prise: connection state recovery on.
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
});
const offsets = new Map();
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    const name = typeof room === "string" ? room : room.room;
    socket.join(name);
    if (ack) ack({ room: name });
  });
  socket.on("publish", ({ room, content }, ack) => {
    const offset = (offsets.get(room) || 0) + 1;
    offsets.set(room, offset);
    const msg = { id: `${Date.now()}-${offset}`, roomId: room, userId: socket.id, userName: "bench", content, timestamp: Date.now(), offset };
    io.to(room).emit("message", msg);
    if (ack) ack({ room, offset, id: msg.id });
  });
});
http.listen(port, "127.0.0.1", () => console.log(`listening ${http.address().port}`));
