# creditflow api, worker and ingest consumer image (one image, three commands).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY domain domain
COPY db db
COPY ledger ledger
COPY lib lib
COPY api api
COPY worker worker
COPY workflows workflows
COPY activities activities
COPY metering metering
COPY ingest ingest
COPY payments payments
COPY webhooks webhooks
COPY client client
COPY cli cli
COPY scripts scripts
COPY portal portal
RUN npx tsc -p tsconfig.build.json && npx tsc -p portal/tsconfig.json && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production CREDITFLOW_MODE=production
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY migrations migrations
COPY portal/index.html portal/index.html
COPY portal/assets portal/assets
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/api/main.js"]
